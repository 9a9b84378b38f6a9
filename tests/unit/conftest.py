"""Shared fixtures for unit tests that need a real S3 HTTP endpoint."""

import socket

import pytest


@pytest.fixture(scope="module")
def moto_s3():
    """moto's S3 server on a free loopback port, with the AWS variables pointing at it in os.environ
    (so spawned processes inherit them). Yields the endpoint URL; each module creates its own bucket."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            mp.setenv(key, value)
        yield endpoint
    server.stop()
