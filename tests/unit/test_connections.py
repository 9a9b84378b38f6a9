"""S3 and MLflow credentials from Airflow connections: the artifact store, MLflow and a subprocess
(the local trainer) all use them, with no AWS_* or MLFLOW_* variable set by hand, and reading the
settings writes none into this process's environment."""

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.s3_server import MotoS3
from tuneops.core.connections import ConnectionSetupError
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore
from tuneops.training.process import TrainerProcess

AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
MLFLOW_AUTH = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@pytest.fixture(scope="module")
def s3():
    server = MotoS3().start()
    server.client().create_bucket(Bucket="tuneops-conn")
    yield server
    server.stop()


@pytest.fixture
def env(restored_environ, monkeypatch):
    for key in (*AWS_VARIABLES, "AWS_DEFAULT_REGION", "AWS_PROFILE", *MLFLOW_AUTH):
        restored_environ.pop(key, None)
    # No shared credentials file either: only the connection can make these calls work.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    return restored_environ


def _aws_connection(env, endpoint: str, conn_id: str = "tuneops_s3") -> None:
    extra = {"endpoint_url": endpoint, "region_name": "eu-west-1"}
    env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
        {"conn_type": "aws", "login": "conn-key", "password": "conn-secret", "extra": extra}
    )
    env["TUNEOPS_S3_CONN_ID"] = conn_id


def _mlflow_connection(env, host: str = "mlflow.internal", port: int = 5000) -> None:
    env["AIRFLOW_CONN_TUNEOPS_MLFLOW"] = json.dumps(
        {"conn_type": "http", "host": host, "port": port, "login": "tuneops", "password": "s3cret-pw"}
    )
    env["TUNEOPS_MLFLOW_CONN_ID"] = "tuneops_mlflow"
    env.pop("MLFLOW_REGISTRY_URI", None)


def test_reading_the_settings_resolves_both_connections_and_writes_no_variable(env, s3):
    _aws_connection(env, s3.endpoint)
    _mlflow_connection(env)
    before = dict(os.environ)

    settings = load_settings()

    assert dict(os.environ) == before
    assert dict(settings.credentials) == {
        "AWS_ACCESS_KEY_ID": "conn-key",
        "AWS_SECRET_ACCESS_KEY": "conn-secret",
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_DEFAULT_REGION": "eu-west-1",
        "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
        "MLFLOW_TRACKING_USERNAME": "tuneops",
        "MLFLOW_TRACKING_PASSWORD": "s3cret-pw",
    }
    assert settings.tracking_uri == settings.registry_uri == "http://mlflow.internal:5000"
    shown = f"{settings!r} {settings.credentials!r} {settings.credentials} {json.dumps(vars(settings), default=str)}"
    assert "conn-secret" not in shown and "s3cret-pw" not in shown, "a logged Settings shows no secret"


def test_the_artifact_store_reaches_s3_through_the_airflow_connection(env, s3, tmp_path):
    _aws_connection(env, s3.endpoint)
    env["TUNEOPS_ARTIFACT_ROOT"] = "s3://tuneops-conn/artifacts"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("via the connection")

    store = ArtifactStore.from_settings(load_settings())
    store.publish_dir(tmp_path / "src", "things/v1")

    assert s3.client().get_object(Bucket="tuneops-conn", Key="artifacts/things/v1/a.txt")["Body"].read() == (
        b"via the connection"
    )
    # A store made from a bare URI (no Settings at hand) resolves the named connection itself.
    assert ArtifactStore("s3://tuneops-conn/artifacts", cache_dir=tmp_path / "bare").exists("things/v1")
    assert env["TUNEOPS_S3_CONN_ID"] == "tuneops_s3"
    assert not any(key in env for key in (*AWS_VARIABLES, "AWS_DEFAULT_REGION"))


def test_the_trainer_subprocess_gets_the_credentials_through_its_environment(env, s3):
    """The local trainer has no Airflow task context: its env= carries the credentials, this
    process's environment does not."""
    _aws_connection(env, s3.endpoint)
    settings = load_settings()
    child = (
        "import os, boto3; print('TUNEOPS_S3_CONN_ID' in os.environ, "
        "[b['Name'] for b in boto3.client('s3').list_buckets()['Buckets']])"
    )

    out = TrainerProcess([sys.executable, "-c", child], env=settings.child_env()).run()

    names_the_connection, buckets = out.strip().split(" ", 1)
    assert names_the_connection == "False", "the child uses the variables, not the connection"
    assert "tuneops-conn" in buckets
    assert "AWS_ACCESS_KEY_ID" not in env


def test_without_the_connection_the_same_call_has_no_credentials(env, s3):
    """The control for the tests above: nothing else in this environment lets boto3 in."""
    from botocore.exceptions import NoCredentialsError

    env["AWS_ENDPOINT_URL"] = s3.endpoint
    with pytest.raises(NoCredentialsError):
        ArtifactStore("s3://tuneops-conn/artifacts").exists("things/v1")
    with pytest.raises(NoCredentialsError):
        ArtifactStore.from_settings(load_settings()).client().list_buckets()


@pytest.fixture
def tracking_server():
    """A stand-in MLflow tracking server on loopback that records each request's Authorization."""
    seen: list[str | None] = []
    experiment = {"experiment_id": "7", "name": "tuneops", "lifecycle_stage": "active"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({"experiment": experiment}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_mlflow_reaches_its_server_with_the_connections_basic_auth(env, tracking_server):
    import mlflow

    from tuneops.core.tracking import configure_mlflow

    port, seen = tracking_server
    _mlflow_connection(env, host="127.0.0.1", port=port)
    settings = load_settings()
    assert not any(key in env for key in MLFLOW_AUTH), "reading the settings hands MLflow nothing"

    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        assert configure_mlflow(settings) == "7"
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])

    expected = "Basic " + base64.b64encode(b"tuneops:s3cret-pw").decode()
    assert seen and all(header == expected for header in seen), seen


def test_a_missing_connection_is_named_with_the_fix(env):
    env["TUNEOPS_S3_CONN_ID"] = "no_such_conn"
    before = dict(os.environ)
    with pytest.raises(ConnectionSetupError) as err:
        load_settings()
    message = str(err.value)
    assert "TUNEOPS_S3_CONN_ID='no_such_conn'" in message and "AIRFLOW_CONN_NO_SUCH_CONN" in message
    assert dict(os.environ) == before


@pytest.mark.parametrize(
    ("variable", "connection", "expected"),
    [
        ("TUNEOPS_S3_CONN_ID", {"conn_type": "http", "host": "x"}, "must be of type 'aws'"),
        ("TUNEOPS_MLFLOW_CONN_ID", {"conn_type": "http", "login": "u"}, "has no host"),
    ],
)
def test_an_unusable_connection_is_refused(env, variable, connection, expected):
    env["AIRFLOW_CONN_BAD"] = json.dumps(connection)
    env[variable] = "bad"
    with pytest.raises(ConnectionSetupError, match=expected):
        load_settings()


def test_a_connection_in_a_secrets_backend_is_found_the_same_way(tmp_path):
    """Airflow's own LocalFilesystemBackend stands in for Vault or AWS Secrets Manager: tuneops only
    names the connection, Airflow's secrets chain finds it. A fresh process, because Airflow loads its
    secrets backends once per process."""
    connections = tmp_path / "connections.json"
    connections.write_text(
        json.dumps(
            {"tuneops_s3": {"conn_type": "aws", "login": "from-backend", "password": "sk", "extra": {}}}
        )
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW__SECRETS__BACKEND="airflow.secrets.local_filesystem.LocalFilesystemBackend",
        AIRFLOW__SECRETS__BACKEND_KWARGS=json.dumps({"connections_file_path": str(connections)}),
        TUNEOPS_S3_CONN_ID="tuneops_s3",
    )
    child = (
        "import os; from tuneops.core.settings import load_settings; "
        "print(load_settings().credentials['AWS_ACCESS_KEY_ID'], 'AWS_ACCESS_KEY_ID' in os.environ)"
    )

    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=120)

    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "from-backend False"
