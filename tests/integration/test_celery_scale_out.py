"""Scale-out on an existing distributed engine: the CeleryExecutor with two workers.

The real scheduler, API server, DAG processor and triggerer, plus two Celery workers (one task
slot each) on the local Redis as broker, with the stack's PostgreSQL database as metadata DB and
result backend. `llmops_monitor` has tasks that run side by side; its runs must succeed with
their tasks spread over both workers.
"""

import pytest

from tests.integration.airflow_stack import AirflowStack

pytestmark = pytest.mark.integration
DAG = "llmops_monitor"
WORKERS = {"worker1", "worker2"}


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory):
    stack = AirflowStack(tmp_path_factory.mktemp("celery-stack"), celery_workers=len(WORKERS))
    stack.start_with(parsed=(DAG,), unpause=(DAG,))
    try:
        yield stack
    finally:
        stack.stop()


def _finished(stack: AirflowStack, run_id: str) -> str | None:
    state = stack.call("GET", f"/dags/{DAG}/dagRuns/{run_id}")["state"]
    return state if state in ("success", "failed") else None


def test_runs_complete_with_their_tasks_spread_over_both_workers(celery_stack):
    stack = celery_stack
    hostnames: set[str] = set()
    for _ in range(3):  # side-by-side tasks land on both workers in the first run almost always
        run_id = stack.call("POST", f"/dags/{DAG}/dagRuns", json={"logical_date": None})["dag_run_id"]
        state = stack.wait_for(f"{DAG} run {run_id} to finish", lambda r=run_id: _finished(stack, r), 300)
        assert state == "success", stack.log_tails()
        tis = stack.call("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]
        ran = [ti for ti in tis if ti["state"] in ("success", "skipped") and ti["hostname"]]
        hostnames |= {ti["hostname"] for ti in ran}
        if hostnames >= WORKERS:
            break
    assert hostnames == WORKERS, (
        f"task hostnames {hostnames}; every task must run on a Celery worker, both used"
    )
