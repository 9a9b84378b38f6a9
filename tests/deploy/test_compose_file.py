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

    validator = jsonschema.Draft201909Validator(json.loads((Path(__file__).with_name("compose_spec.json")).read_text()))
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
    used = set(re.findall(r"\$\{(\w+)(?::?-[^}]*)?\}", (REPO / "docker-compose.yaml").read_text()))
    example = {line.split("=")[0] for line in (REPO / ".env.example").read_text().splitlines() if "=" in line}
    assert used <= example, used - example


def test_airflow_services_share_the_artifact_store_and_mlflow_server():
    env = _compose()["services"]["airflow-scheduler"]["environment"]
    assert env["TUNEOPS_ARTIFACT_ROOT"].startswith("s3://")
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


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
    pins = (REPO / "requirements.txt").read_text().splitlines()
    assert any(p.startswith("apache-airflow-providers-celery==") for p in pins)
    assert any(p.startswith("redis==") for p in pins)
