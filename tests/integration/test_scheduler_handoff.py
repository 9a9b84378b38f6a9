"""A data team's batch reaches validation under the real scheduler, not dag.test().

Starts Airflow's API server, scheduler, DAG processor and triggerer on loopback (see
airflow_stack.py) and drives them through the REST API only: the producer DAG's asset event
must start an asset-triggered `llmops_validate_data` run that publishes the batch (an event
posted by hand runs the whole chain in test_full_stack.py). The training DAGs stay paused.
"""

from pathlib import Path

import pytest
import requests

from tests.integration.airflow_stack import AirflowStack, running
from tuneops.airflow.assets import LANDING

pytestmark = pytest.mark.integration
PRODUCER, VALIDATE = "llmops_example_producer", "llmops_validate_data"
TRAINING = ("llmops_build_prompt_dataset", "llmops_finetune")
RUN_TIMEOUT = 240


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, request):
    stack = AirflowStack(tmp_path_factory.mktemp("airflow-stack"))
    with running(stack, request, parsed=(PRODUCER, VALIDATE, *TRAINING), unpause=(PRODUCER, VALIDATE)):
        yield stack


def _wait_for_new_asset_triggered_run(stack: AirflowStack, seen: set[str]) -> dict:
    """The first validate run not in ``seen`` that was triggered by an asset event, once it succeeds."""

    def succeeded():
        new = [
            r
            for r in stack.runs(VALIDATE)
            if r["dag_run_id"] not in seen and r["run_type"] == "asset_triggered"
        ]
        assert not [r for r in new if r["state"] == "failed"], f"asset-triggered run failed: {new}"
        return next((r for r in new if r["state"] == "success"), None)

    return stack.wait_for(f"an asset-triggered {VALIDATE} run to succeed", succeeded, RUN_TIMEOUT)


def _runs_in_postgres(stack: AirflowStack, dag_id: str) -> set[str]:
    import psycopg2

    from tests.integration.postgres import POSTGRES

    with psycopg2.connect(dbname=stack.database.name, **POSTGRES) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT run_id FROM dag_run WHERE dag_id = %s", (dag_id,))
        return {row[0] for row in cursor.fetchall()}


def _asset_id(stack: AirflowStack, name: str = LANDING.name) -> int:
    assets = stack.call("GET", "/assets", params={"name_pattern": name})["assets"]
    return next(a["id"] for a in assets if a["name"] == name)


def test_rest_api_refuses_unauthenticated_writes(airflow):
    events_before = airflow.call("GET", "/assets/events")["total_entries"]
    runs_before = len(airflow.runs(PRODUCER))
    forged = {"asset_id": _asset_id(airflow), "extra": {"batch_uri": "/tmp/forged.jsonl"}}

    trigger = requests.post(
        f"{airflow.url}/api/v2/dags/{PRODUCER}/dagRuns", json={"logical_date": None}, timeout=30
    )
    event = requests.post(f"{airflow.url}/api/v2/assets/events", json=forged, timeout=30)

    assert trigger.status_code in (401, 403), trigger.text
    assert event.status_code in (401, 403), event.text
    assert airflow.call("GET", "/assets/events")["total_entries"] == events_before
    assert len(airflow.runs(PRODUCER)) == runs_before


def test_producer_run_triggers_validation_of_its_batch(airflow):
    seen = {r["dag_run_id"] for r in airflow.runs(VALIDATE)}
    run = airflow.call(
        "POST", f"/dags/{PRODUCER}/dagRuns", json={"logical_date": None, "conf": {"rows": 120, "seed": 3}}
    )

    validate_run = _wait_for_new_asset_triggered_run(airflow, seen)

    # The metadata lives in the stack's own database on the local PostgreSQL, not in a SQLite file.
    assert validate_run["dag_run_id"] in _runs_in_postgres(airflow, VALIDATE)
    assert not list(airflow.airflow_home.glob("*.db"))
    landed = airflow.xcom(PRODUCER, run["dag_run_id"], "land_batch")
    assert landed.startswith(str(airflow.tuneops_home / "landing" / "support_tickets" / "batch-"))
    (request,) = airflow.xcom(VALIDATE, validate_run["dag_run_id"], "resolve_batches")
    assert (request["batch_uri"], request["project"]) == (landed, "support_tickets")
    validated = airflow.xcom(VALIDATE, validate_run["dag_run_id"], "validate", map_index=0)
    assert validated["rows"] == 120
    assert (
        Path(validated["uri"]).parent == airflow.tuneops_home / "artifacts" / "validated" / "support_tickets"
    )
    assert (Path(validated["uri"]) / "_SUCCESS").is_file()
    for dag_id in TRAINING:
        assert airflow.call("GET", f"/dags/{dag_id}")["is_paused"] is True
        assert airflow.runs(dag_id) == [], f"{dag_id} ran although it is paused"


def test_a_retrain_request_from_monitoring_starts_finetune(airflow):
    """Runs last: it unpauses llmops_finetune. The scheduler must start it on a
    tuneops_retrain_requested event alone; this stack has no prompt dataset, so the run must
    fail at once in resolve_dataset, naming what is missing, rather than train on nothing. The
    request names its project as its partition key: the run is that project's."""
    from tuneops.airflow.assets import RETRAIN_REQUESTED

    finetune = "llmops_finetune"
    airflow.call("PATCH", f"/dags/{finetune}", json={"is_paused": False})
    try:
        event = {
            "asset_id": _asset_id(airflow, RETRAIN_REQUESTED.name),
            "partition_key": "support_tickets",  # the project to retrain
            "extra": {"breaches": ["drift.label_psi"]},
        }
        airflow.call("POST", "/assets/events", json=event)

        def finished():
            runs = [r for r in airflow.runs(finetune) if r["run_type"] == "asset_triggered"]
            return next((r for r in runs if r["state"] in ("success", "failed")), None)

        run = airflow.wait_for("an asset-triggered llmops_finetune run to finish", finished, RUN_TIMEOUT)
    finally:
        airflow.call("PATCH", f"/dags/{finetune}", json={"is_paused": True})
    assert run["state"] == "failed"
    tis = airflow.call("GET", f"/dags/{finetune}/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
    states = {ti["task_id"]: ti["state"] for ti in tis}
    assert states["resolve_dataset"] == "failed" and states["plan_training"] == "upstream_failed"
    assert run["partition_key"] == "support_tickets"
