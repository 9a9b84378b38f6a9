"""Shared fixtures for unit tests that need a real S3 HTTP endpoint."""

import pytest

from tests.support.s3_server import TEST_CREDENTIALS, MotoS3


@pytest.fixture(scope="module")
def moto_s3():
    """moto's S3 server on a free loopback port, with the AWS variables pointing at it in os.environ
    (so spawned processes inherit them). Yields the endpoint URL; each module creates its own bucket."""
    server = MotoS3().start()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"AWS_ENDPOINT_URL": server.endpoint, **TEST_CREDENTIALS}.items():
            mp.setenv(key, value)
        yield server.endpoint
    server.stop()
