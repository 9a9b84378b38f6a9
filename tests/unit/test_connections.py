"""S3 and MLflow credentials from Airflow connections: the artifact store, MLflow settings and a
subprocess (the local trainer) all use them, with no AWS_* or MLFLOW_* variable set by hand."""

import json
import os
import subprocess
import sys

import pytest

from tests.support.s3_server import MotoS3
from tuneops.core.connections import ConnectionSetupError, export_connections
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore

AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@pytest.fixture(scope="module")
def s3():
    server = MotoS3().start()
    server.client().create_bucket(Bucket="tuneops-conn")
    yield server
    server.stop()


@pytest.fixture
def env(restored_environ, monkeypatch):
    for key in (*AWS_VARIABLES, "AWS_DEFAULT_REGION", "AWS_PROFILE", "MLFLOW_TRACKING_USERNAME"):
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


def test_the_artifact_store_reaches_s3_through_the_airflow_connection(env, s3, tmp_path):
    _aws_connection(env, s3.endpoint)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("via the connection")

    store = ArtifactStore("s3://tuneops-conn/artifacts", cache_dir=tmp_path / "cache")
    store.publish_dir(tmp_path / "src", "things/v1")

    assert s3.client().get_object(Bucket="tuneops-conn", Key="artifacts/things/v1/a.txt")["Body"].read() == (
        b"via the connection"
    )
    assert "TUNEOPS_S3_CONN_ID" not in env
    assert (env["AWS_ENDPOINT_URL"], env["AWS_ACCESS_KEY_ID"], env["AWS_DEFAULT_REGION"]) == (
        s3.endpoint,
        "conn-key",
        "eu-west-1",
    )


def test_a_subprocess_inherits_the_exported_credentials(env, s3):
    """The local trainer is a subprocess with no Airflow task context: it must reach S3 all the same."""
    _aws_connection(env, s3.endpoint)
    load_settings()
    child = "import boto3; print([b['Name'] for b in boto3.client('s3').list_buckets()['Buckets']])"

    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)

    assert out.returncode == 0, out.stderr[-2000:]
    assert "tuneops-conn" in out.stdout


def test_without_the_connection_the_same_call_has_no_credentials(env, s3):
    """The control for the tests above: nothing else in this environment lets boto3 in."""
    from botocore.exceptions import NoCredentialsError

    env["AWS_ENDPOINT_URL"] = s3.endpoint
    with pytest.raises(NoCredentialsError):
        ArtifactStore("s3://tuneops-conn/artifacts").exists("things/v1")


def test_mlflow_settings_and_basic_auth_come_from_the_connection(env):
    env["AIRFLOW_CONN_TUNEOPS_MLFLOW"] = json.dumps(
        {
            "conn_type": "http",
            "host": "mlflow.internal",
            "port": 5000,
            "login": "tuneops",
            "password": "s3cret-pw",
        }
    )
    env["TUNEOPS_MLFLOW_CONN_ID"] = "tuneops_mlflow"
    env.pop("MLFLOW_REGISTRY_URI", None)

    settings = load_settings()

    assert settings.tracking_uri == settings.registry_uri == "http://mlflow.internal:5000"
    assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == ("tuneops", "s3cret-pw")


def test_a_missing_connection_is_named_with_the_fix(env):
    env["TUNEOPS_S3_CONN_ID"] = "no_such_conn"
    with pytest.raises(ConnectionSetupError) as err:
        export_connections()
    message = str(err.value)
    assert "TUNEOPS_S3_CONN_ID='no_such_conn'" in message and "AIRFLOW_CONN_NO_SUCH_CONN" in message
    assert not any(key in env for key in AWS_VARIABLES)


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
        export_connections()


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
    child = "import os; from tuneops.core.connections import export_connections; export_connections(); print(os.environ['AWS_ACCESS_KEY_ID'])"

    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=120)

    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "from-backend"
