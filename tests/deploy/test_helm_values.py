"""deploy/helm/airflow-values.yaml against the official Apache Airflow chart and against tuneops.

No Helm binary or chart download here: ``airflow_chart_values.schema.json`` is the chart's
``values.schema.json`` (apache/airflow ``chart/``, Apache-2.0) trimmed to every top-level key and
every key on the paths these values use, with their types; its ``$comment`` names the commit.
"""

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "deploy" / "helm" / "airflow-values.yaml"


def _values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def _schema() -> dict:
    return json.loads(Path(__file__).with_name("airflow_chart_values.schema.json").read_text())


def _errors(values: dict) -> list[str]:
    import jsonschema

    schema = _schema()
    errors = [
        f"{'.'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(values)
    ]
    # The chart's schema leaves the top level open; an unknown key there is a typo all the same.
    errors += [f"{key}: not a value of the chart" for key in values if key not in schema["properties"]]
    return errors


def test_the_values_follow_the_charts_schema():
    assert _errors(_values()) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("executor",), "kubernetes"),
        (("dags", "gitSync", "branchName"), "main"),
        (("images", "airflow", "pullPolicy"), "Sometimes"),
        (("secret",), [{"envName": "AIRFLOW_CONN_X"}]),
        (("fernetKeySecret",), "x"),
    ],
)
def test_a_mistake_in_the_values_is_caught(path, value):
    broken = copy.deepcopy(_values())
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert _errors(broken), f"{'.'.join(path)}={value!r} passed the schema"


def test_production_auth_and_no_secret_in_the_values():
    values = _values()
    assert values["config"]["core"]["auth_manager"].endswith("fab_auth_manager.FabAuthManager")
    assert values["webserver"]["defaultUser"]["enabled"] is False, "its password would sit in the values"
    assert values["postgresql"]["enabled"] is False and values["data"]["metadataSecretName"]
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[key]
    text = VALUES.read_text().lower()
    assert not re.search(r"(password|secret_key|access_key)\s*:", text), "credentials belong in Secrets"


def test_the_connections_from_the_secret_are_the_ones_tuneops_resolves(restored_environ):
    """The env and Secret wiring, replayed through tuneops' settings as a pod would see it."""
    from tuneops.core.settings import load_settings

    values = _values()
    env = {item["name"]: item["value"] for item in values["env"]}
    secret_env = {item["envName"]: item["secretKey"] for item in values["secret"]}
    # What the Secret tuneops-airflow-connections would hold, per README's example.
    secret = {
        "tuneops_s3": json.dumps(
            {"conn_type": "aws", "login": "AKIA", "password": "s3cret", "extra": {"region_name": "eu-west-1"}}
        ),
        "tuneops_mlflow": json.dumps(
            {
                "conn_type": "http",
                "host": "tuneops-mlflow.tuneops",
                "port": 5000,
                "login": "tuneops",
                "password": "pw",
            }
        ),
    }
    pod = restored_environ
    for key in [k for k in pod if k.startswith(("AWS_", "MLFLOW_"))]:
        del pod[key]
    pod.update(env)
    pod.update({name: secret[key] for name, key in secret_env.items()})
    settings = load_settings()

    assert settings.artifact_root.startswith("s3://")
    credentials = settings.credentials
    assert (credentials["AWS_ACCESS_KEY_ID"], credentials["AWS_DEFAULT_REGION"]) == ("AKIA", "eu-west-1")
    assert settings.tracking_uri == "http://tuneops-mlflow.tuneops:5000"
    assert credentials["MLFLOW_TRACKING_USERNAME"] == "tuneops"


def test_the_image_and_executors_are_what_the_project_pins_and_tests():
    values = _values()
    pinned = {
        line.split("==")[0]: line.split("==")[1]
        for line in (REPO / "constraints" / "all.txt").read_text().splitlines()
        if "==" in line
    }
    assert values["airflowVersion"] == values["defaultAirflowTag"] == pinned["apache-airflow"]
    dockerfile = (REPO / "docker" / "airflow.Dockerfile").read_text()
    assert f"FROM apache/airflow:{pinned['apache-airflow']}-" in dockerfile
    assert "COPY --chown=airflow:root dags /opt/airflow/dags" in dockerfile, "baked DAGs are the default"
    assert values["executor"] in ("KubernetesExecutor", "CeleryExecutor")
    assert values["dags"]["gitSync"]["subPath"] == "dags" and (REPO / "dags").is_dir()
    assert (
        "apache-airflow-providers-cncf-kubernetes" in pinned and "apache-airflow-providers-celery" in pinned
    )
