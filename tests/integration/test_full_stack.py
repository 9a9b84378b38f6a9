"""The whole chain on production-shaped services, started by the scheduler itself.

- Airflow: API server, scheduler, DAG processor and triggerer (LocalExecutor) on a fresh
  PostgreSQL database, with the FAB auth manager that the compose file and Helm values use.
- Artifacts: ``s3://`` on moto's S3 server, reached only through the Airflow connection
  ``tuneops_s3`` (no AWS_* variable is set for the Airflow components).
- MLflow: an ``mlflow server`` process with a PostgreSQL backend, artifacts on the same S3 and
  basic auth, reached only through the Airflow connection ``tuneops_mlflow``.

A landing-batch Asset event posted through the REST API must run validate -> prompts ->
finetune -> gate -> promote by itself and leave a new champion that loads from the registry.
Then a user triggers ``llmops_finetune`` from the UI's trigger form in Chromium.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys

import pytest
import requests

from tests.integration.airflow_stack import ADMIN, REPO, AirflowStack, running
from tests.integration.mlflow_server import MlflowServer
from tests.support.s3_server import TEST_CREDENTIALS, MotoS3
from tests.support.tiny_models import seed_builtin_base_model
from tuneops.airflow.assets import LANDING

pytestmark = pytest.mark.integration
BUCKET = "tuneops-e2e"
FAST_RECIPE = str(REPO / "tests" / "data" / "recipe-fast.yaml")
MODEL = "tuneops-test-triage"
CHAIN = ("llmops_validate_data", "llmops_build_prompt_dataset", "llmops_finetune")
CHAIN_TIMEOUT = 900
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def s3():
    server = MotoS3().start()
    server.client().create_bucket(Bucket=BUCKET)
    _seed_tiny_base_model(server.endpoint)
    yield server
    server.stop()


def _seed_tiny_base_model(endpoint: str) -> None:
    """The session's tiny base model in the bucket, as a user's bucket would hold theirs."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"AWS_ENDPOINT_URL": endpoint, **TEST_CREDENTIALS}.items():
            mp.setenv(key, value)
        seed_builtin_base_model(f"s3://{BUCKET}/artifacts")


@pytest.fixture(scope="module")
def mlflow_server(s3, tmp_path_factory):
    server = MlflowServer(
        tmp_path_factory.mktemp("mlflow"),
        artifacts_destination=f"s3://{BUCKET}/mlflow",
        env={"MLFLOW_S3_ENDPOINT_URL": s3.endpoint, "AWS_ENDPOINT_URL": s3.endpoint, **TEST_CREDENTIALS},
        basic_auth=True,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def airflow(s3, mlflow_server, tmp_path_factory, request):
    connections = {
        "AIRFLOW_CONN_TUNEOPS_S3": {
            "conn_type": "aws",
            "login": TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "password": TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "extra": {"endpoint_url": s3.endpoint, "region_name": TEST_CREDENTIALS["AWS_DEFAULT_REGION"]},
        },
        "AIRFLOW_CONN_TUNEOPS_MLFLOW": {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": mlflow_server.port,
            "login": "admin",
            "password": mlflow_server.admin_password,
        },
    }
    env = {
        **{key: json.dumps(value) for key, value in connections.items()},
        "TUNEOPS_S3_CONN_ID": "tuneops_s3",
        "TUNEOPS_MLFLOW_CONN_ID": "tuneops_mlflow",
        "TUNEOPS_ARTIFACT_ROOT": f"s3://{BUCKET}/artifacts",
        # The data team lands batches beside the artifacts, not under them: a landing root of its own.
        "TUNEOPS_LANDING_ROOTS": f"s3://{BUCKET}/landing",
        # Only the connections may lead to S3 and MLflow.
        "MLFLOW_TRACKING_URI": None,
        **dict.fromkeys(["AWS_ENDPOINT_URL", *TEST_CREDENTIALS], None),
    }
    stack = AirflowStack(tmp_path_factory.mktemp("airflow-full"), auth_manager="fab", env=env)
    with running(stack, request, parsed=CHAIN, unpause=CHAIN, more_logs=mlflow_server.log_tail):
        yield stack


@pytest.fixture
def mlflow_login(mlflow_server, monkeypatch):
    """This process's MLflow client, logged in to the test server."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", mlflow_server.admin_password)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def _asset_id(stack: AirflowStack, name: str) -> int:
    assets = stack.call("GET", "/assets", params={"name_pattern": name})["assets"]
    return next(a["id"] for a in assets if a["name"] == name)


def _finished(stack: AirflowStack, dag_id: str, seen: set[str], run_type: str):
    """A probe: the first new run of ``run_type`` once it has finished; fails at once if it failed."""

    def probe():
        runs = [r for r in stack.runs(dag_id) if r["dag_run_id"] not in seen and r["run_type"] == run_type]
        failed = [r for r in runs if r["state"] == "failed"]
        assert not failed, f"{dag_id} run failed: {failed}\n{stack.log_tails()}"
        return next((r for r in runs if r["state"] == "success"), None)

    return probe


def test_rest_api_and_mlflow_refuse_requests_without_credentials(airflow, mlflow_server):
    asset = _asset_id(airflow, LANDING.name)
    forged = {"asset_id": asset, "extra": {"batch_uri": f"s3://{BUCKET}/landing/forged.jsonl"}}

    trigger = requests.post(
        f"{airflow.url}/api/v2/dags/llmops_finetune/dagRuns", json={"logical_date": None}, timeout=30
    )
    event = requests.post(f"{airflow.url}/api/v2/assets/events", json=forged, timeout=30)
    wrong_password = requests.post(
        f"{airflow.url}/auth/token", json={"username": ADMIN, "password": "admin"}, timeout=30
    )
    registry = requests.get(f"{mlflow_server.url}/api/2.0/mlflow/registered-models/search", timeout=30)

    assert trigger.status_code in (401, 403), trigger.text
    assert event.status_code in (401, 403), event.text
    assert wrong_password.status_code == 401, wrong_password.text
    assert registry.status_code == 401, registry.text
    assert airflow.call("GET", "/assets/events", params={"asset_id": asset})["total_entries"] == 0
    # (Unpausing may start the weekly schedule's latest run; no manual run may exist.)
    assert [r for r in airflow.runs("llmops_finetune") if r["run_type"] == "manual"] == []


def test_the_compose_health_checks_pass_against_the_running_components(airflow):
    """docker-compose.yaml's health checks, run against this stack's components (compose itself cannot
    run here); a host that runs no component must fail the same check."""
    import yaml

    services = yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]
    for name in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-api-server"):
        kind, *command = services[name]["healthcheck"]["test"]
        assert kind == "CMD", name
        command = [arg.replace("http://localhost:8080", airflow.url) for arg in command]
        proc = subprocess.run(command, env=airflow.env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (
            f"{name}: {' '.join(command)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    elsewhere = [*services["airflow-scheduler"]["healthcheck"]["test"][1:], "--hostname", "no-such-host"]
    elsewhere.remove("--local")
    refused = subprocess.run(elsewhere, env=airflow.env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "No alive jobs found" in refused.stderr, refused.stderr[-2000:]


def test_a_landing_event_runs_the_chain_to_a_new_champion_on_s3_and_the_mlflow_server(
    airflow, s3, mlflow_login, tmp_path
):
    from tuneops.core.sample_data import write_sample_batch

    batch = write_sample_batch(tmp_path / "batch-0001.jsonl", 400, seed=0)
    key = "landing/support_tickets/batch-0001.jsonl"
    s3.client().upload_file(str(batch), BUCKET, key)
    seen = {dag_id: {r["dag_run_id"] for r in airflow.runs(dag_id)} for dag_id in CHAIN}

    event = {
        "asset_id": _asset_id(airflow, LANDING.name),
        "partition_key": "support_tickets",  # the project
        "extra": {"batch_uri": f"s3://{BUCKET}/{key}"},
    }
    airflow.call("POST", "/assets/events", json=event)

    runs = {
        dag_id: airflow.wait_for(
            f"an asset-triggered {dag_id} run to succeed",
            _finished(airflow, dag_id, seen[dag_id], "asset_triggered"),
            CHAIN_TIMEOUT,
            interval=5,
        )
        for dag_id in CHAIN
    }

    validate, prompts, finetune = (runs[dag_id]["dag_run_id"] for dag_id in CHAIN)
    (request,) = airflow.xcom("llmops_validate_data", validate, "resolve_batches")
    assert (request["batch_uri"], request["project"]) == (event["extra"]["batch_uri"], "support_tickets")
    validated = airflow.xcom("llmops_validate_data", validate, "validate", map_index=0)
    dataset = airflow.xcom("llmops_build_prompt_dataset", prompts, "build")
    plan = airflow.xcom("llmops_finetune", finetune, "plan_training")
    promoted = airflow.xcom("llmops_finetune", finetune, "promote")
    assert validated["rows"] == 400
    assert validated["uri"].startswith(f"s3://{BUCKET}/artifacts/validated/")
    assert dataset["uri"].startswith(f"s3://{BUCKET}/artifacts/") and plan["dataset_uri"] == dataset["uri"]
    assert plan["output_uri"].startswith(f"s3://{BUCKET}/artifacts/")
    assert promoted["changed"] is True and promoted["name"] == MODEL

    # The registry on the MLflow server holds the champion, with its artifacts in the S3 bucket.
    champion = mlflow_login.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == promoted["version"]
    assert champion.tags["tuneops.dag_run_id"] == finetune
    assert champion.tags["tuneops.dataset_version"] == dataset["version"]
    assert (
        mlflow_login.get_experiment(mlflow_login.get_run(champion.run_id).info.experiment_id).name
        == "tuneops"
    )
    keys = [
        o["Key"]
        for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="mlflow/")
        for o in page.get("Contents", [])
    ]
    assert any(k.endswith("MLmodel") for k in keys), keys[:20]
    # Unpausing started the weekly schedule's latest run before any dataset existed: skipped, not failed.
    for run in [r for r in airflow.runs("llmops_finetune") if r["run_type"] == "scheduled"]:
        assert run["state"] == "success", run
    for marker in (validated["uri"], dataset["uri"], plan["output_uri"]):
        s3.client().head_object(Bucket=BUCKET, Key=f"{marker.removeprefix(f's3://{BUCKET}/')}/_SUCCESS")


def test_the_champion_loads_from_the_registry_in_a_fresh_process(airflow, mlflow_server):
    """models:/<name>@champion through the server: artifacts come through its proxy, so the client
    needs MLflow credentials only, no S3 ones."""
    code = (
        "import json, mlflow\n"
        f"model = mlflow.pyfunc.load_model('models:/{MODEL}@champion')\n"
        "out = model.predict([{'subject': 'Card declined', 'input': 'Hi, this is Sam. My card was charged twice.'}])\n"
        "print(json.dumps(out))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MLFLOW_"))}
    env.update(
        MLFLOW_TRACKING_URI=mlflow_server.url,
        MLFLOW_TRACKING_USERNAME="admin",
        MLFLOW_TRACKING_PASSWORD=mlflow_server.admin_password,
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (reply,) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(reply, str) and reply.strip()


def _chromium() -> str:
    """The system Chromium that Playwright drives (Debian's ``chromium`` package, or TUNEOPS_CHROMIUM)."""
    path = os.environ.get("TUNEOPS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail(
            "the UI test needs a Chromium binary: `apt-get install chromium` (Debian/Ubuntu) or set "
            "TUNEOPS_CHROMIUM to one; `make test` finds or installs it (scripts/ensure_chromium.sh)"
        )
    return path


def test_a_user_logs_in_and_triggers_finetune_from_the_ui_form(airflow):
    """Runs after the chain: the form gets the prompt dataset it published, which the run reuses."""
    from playwright.sync_api import expect, sync_playwright

    builds = [r for r in airflow.runs("llmops_build_prompt_dataset") if r["state"] == "success"]
    assert builds, "the chain test must have published a prompt dataset first"
    dataset_uri = airflow.xcom("llmops_build_prompt_dataset", builds[0]["dag_run_id"], "build")["uri"]
    run_id = f"ui_trigger_{secrets.token_hex(4)}"
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{airflow.url}/")
            page.fill("#username", ADMIN)
            page.fill("#password", airflow.admin_password)
            page.get_by_role("button", name="Sign In").click()
            page.wait_for_load_state("networkidle")

            page.goto(f"{airflow.url}/dags/llmops_finetune")
            page.get_by_role("button", name="Trigger Dag").click()
            form = page.get_by_role("dialog")
            expect(form.locator("#element_recipe")).to_have_value("")  # empty: the project's recipe
            form.locator("#element_dataset_uri").fill(dataset_uri)
            form.get_by_role("combobox").click()
            page.get_by_role("option", name="local", exact=True).click()
            form.get_by_role("button", name="Advanced Options").click()
            form.locator("input[name=dagRunId]").fill(run_id)
            page.screenshot(path=ARTIFACTS / "airflow-ui-trigger-form.png", full_page=True)
            form.get_by_role("button", name="Trigger", exact=True).click()
            page.wait_for_url(f"**/dags/llmops_finetune/runs/{run_id}")

            def finished():
                state = airflow.call("GET", f"/dags/llmops_finetune/dagRuns/{run_id}")["state"]
                return state if state in ("success", "failed") else None

            state = airflow.wait_for(
                "the run triggered from the UI to finish", finished, CHAIN_TIMEOUT, interval=5
            )
            page.reload()
            expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=30_000)
        finally:
            page.screenshot(path=ARTIFACTS / "airflow-ui-run.png", full_page=True)
            browser.close()

    run = airflow.call("GET", f"/dags/llmops_finetune/dagRuns/{run_id}")
    assert state == "success", airflow.log_tails()
    assert run["run_type"] == "manual" and run["triggered_by"] == "ui"
    assert run["conf"] == {
        "dataset_uri": dataset_uri,
        "project": None,  # empty: the dataset's project
        "recipe": None,  # empty: the project's recipe
        "compute": "local",
        "sweep": None,
    }
    plan = airflow.xcom("llmops_finetune", run_id, "plan_training")
    assert plan["dataset_uri"] == dataset_uri and plan["project"] == "support_tickets"
    assert plan["recipe_ref"] == FAST_RECIPE  # the tests' support_tickets project names it
