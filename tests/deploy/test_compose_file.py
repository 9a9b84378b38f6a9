"""docker-compose.yaml cannot run here (no Docker engine): check what can be checked.

``compose_spec.json`` is the Compose Specification's JSON schema as docker-compose 1.29.2 ships it
(``compose/config/compose_spec.json``, Apache-2.0), kept here because nothing may be downloaded
at test time.
"""

import copy
import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _compose():
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_the_file_follows_the_compose_specification():
    import jsonschema

    validator = jsonschema.Draft201909Validator(
        json.loads((Path(__file__).with_name("compose_spec.json")).read_text())
    )
    assert [e.message for e in validator.iter_errors(_compose())] == []
    broken = copy.deepcopy(_compose())
    broken["services"]["serving"]["healthcheck"]["retires"] = 3  # a typo the engine would refuse
    broken["services"]["mlflow"]["ports"] = "5000"
    assert {tuple(e.path) for e in validator.iter_errors(broken)} == {
        ("services", "serving", "healthcheck"),
        ("services", "mlflow", "ports"),
    }


def test_every_build_context_dockerfile_and_mount_exists():
    compose = _compose()
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            assert (REPO / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_every_variable_it_uses_is_documented_in_env_example():
    used = set(re.findall(r"(?<!\$)\$\{(\w+)(?::?-[^}]*)?\}", (REPO / "docker-compose.yaml").read_text()))
    example = {line.split("=")[0] for line in (REPO / ".env.example").read_text().splitlines() if "=" in line}
    assert used <= example, used - example


def _with_env_example(value: str) -> str:
    """``value`` with each ${VAR} replaced by .env.example's value, as `docker compose` would."""
    example = dict(
        line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines() if "=" in line
    )
    return re.sub(
        r"(?<!\$)\$\{(\w+)(?::?-([^}]*))?\}", lambda m: example.get(m.group(1)) or m.group(2) or "", value
    )


def test_airflow_reaches_minio_and_mlflow_through_airflow_connections(restored_environ):
    """The connections compose defines resolve, through tuneops' own code, to the stack's services."""
    from tuneops.core.settings import load_settings

    compose_env = _compose()["services"]["airflow-scheduler"]["environment"]
    assert not {k for k in compose_env if k.startswith(("AWS_", "MLFLOW_"))}, (
        "credentials go in the connections"
    )
    env = restored_environ
    for key in [k for k in env if k.startswith(("AWS_", "MLFLOW_"))]:
        del env[key]
    env.update({key: _with_env_example(str(value)) for key, value in compose_env.items()})
    before = dict(env)
    settings = load_settings()
    credentials = settings.credentials

    assert settings.artifact_root == "s3://tuneops/artifacts"
    assert (credentials["AWS_ENDPOINT_URL"], credentials["AWS_ACCESS_KEY_ID"]) == (
        "http://minio:9000",
        "tuneops",
    )
    assert credentials["AWS_SECRET_ACCESS_KEY"] == "change-me-too"
    assert (settings.tracking_uri, credentials["MLFLOW_TRACKING_USERNAME"]) == ("http://mlflow:5000", "admin")
    assert credentials["MLFLOW_TRACKING_PASSWORD"] == "change-me"
    assert len(credentials) == 7 and dict(env) == before  # resolved, and written nowhere


def test_the_stack_uses_production_auth_with_every_secret_from_env():
    compose = _compose()
    airflow_env = compose["services"]["airflow-scheduler"]["environment"]
    assert airflow_env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")
    pins = (REPO / "constraints" / "all.txt").read_text().splitlines()
    assert any(p.startswith("apache-airflow-providers-fab==") for p in pins)
    init = " ".join(compose["services"]["airflow-init"]["command"])
    assert 'airflow users create --role Admin --username admin --password "$$AIRFLOW_ADMIN_PASSWORD"' in init
    mlflow = compose["services"]["mlflow"]
    assert "--app-name basic-auth" in " ".join(mlflow["command"])
    assert mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == "${MLFLOW_ADMIN_PASSWORD}"
    # Every password, secret or key in the file is a variable from .env, never a literal.
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|_KEY($|_)", key) and not key.endswith("_CONN_ID"):
                assert re.fullmatch(r"\$\{\w+\}", str(value)), (
                    f"{name}: {key} holds a literal, not a ${{VAR}}"
                )
    example = (REPO / ".env.example").read_text().splitlines()
    secrets = [line.split("=", 1) for line in example if re.match(r"\w*(PASSWORD|SECRET|KEY)\w*=", line)]
    assert secrets and all(value.startswith("change-me") for _, value in secrets), secrets


def test_mlflow_answers_to_its_compose_hostname():
    """MLflow's host check refuses Host headers it does not know; Airflow and serving call mlflow:5000."""
    command = " ".join(_compose()["services"]["mlflow"]["command"])
    from mlflow.server.security_utils import is_allowed_host_header

    allowed = re.search(r"--allowed-hosts (\S+)", command).group(1).split(",")
    assert is_allowed_host_header(allowed, "mlflow:5000")
    assert not is_allowed_host_header(allowed, "attacker.example:5000")


def test_the_serving_service_runs_the_serve_command_on_the_stack():
    from tuneops.cli import build_parser

    serving = _compose()["services"]["serving"]
    dockerfile = (REPO / serving["build"]["dockerfile"]).read_text()
    assert '"-m", "tuneops", "serve"' in dockerfile
    args = build_parser().parse_args(["serve", *serving["command"]])
    assert args.model_name == "tuneops-support-triage" and args.alias == "champion"
    assert serving["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_the_celery_profile_scales_out_with_the_executor_the_tests_run():
    compose = _compose()
    worker, redis = compose["services"]["airflow-worker"], compose["services"]["redis"]
    assert worker["profiles"] == ["celery"] == redis["profiles"]
    assert worker["command"] == ["airflow", "celery", "worker"] and worker["deploy"]["replicas"] == 2
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    pins = (REPO / "constraints" / "all.txt").read_text().splitlines()
    assert any(p.startswith("apache-airflow-providers-celery==") for p in pins)
    assert any(p.startswith("redis==") for p in pins)


def test_every_port_it_names_agrees_with_what_listens_there():
    compose = _compose()
    services = compose["services"]
    airflow_env = services["airflow-scheduler"]["environment"]

    def container_port(service: str) -> int:
        (mapping,) = services[service]["ports"]
        return int(mapping.split(":")[-1])

    # API server: what the workers call, what compose publishes, what its health check asks.
    assert (
        airflow_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
        == f"http://airflow-api-server:{container_port('airflow-api-server')}/execution/"
    )
    assert f"localhost:{container_port('airflow-api-server')}/" in " ".join(
        services["airflow-api-server"]["healthcheck"]["test"]
    )
    # MLflow: the port it listens on, the one it publishes, the Airflow connection's and serving's.
    mlflow_port = int(re.search(r"--port (\d+)", " ".join(services["mlflow"]["command"])).group(1))
    assert container_port("mlflow") == mlflow_port
    assert (
        json.loads(airflow_env["AIRFLOW_CONN_TUNEOPS_MLFLOW"].replace("${MLFLOW_ADMIN_PASSWORD}", "x"))[
            "port"
        ]
        == mlflow_port
    )
    assert services["serving"]["environment"]["MLFLOW_TRACKING_URI"] == f"http://mlflow:{mlflow_port}"
    # Serving: the image's entry point port is the one compose publishes and checks.
    dockerfile = (REPO / services["serving"]["build"]["dockerfile"]).read_text()
    serve_port = int(re.search(r'"--port", "(\d+)"', dockerfile).group(1))
    assert container_port("serving") == serve_port and f"EXPOSE {serve_port}" in dockerfile
    assert f"localhost:{serve_port}/health" in " ".join(services["serving"]["healthcheck"]["test"])
    # MinIO's S3 API (its default, 9000) is what the connection, MLflow and serving use.
    conn = airflow_env["AIRFLOW_CONN_TUNEOPS_S3"]
    assert '"endpoint_url": "http://minio:9000"' in conn
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "localhost:9000/minio/health" in " ".join(services["minio"]["healthcheck"]["test"])
