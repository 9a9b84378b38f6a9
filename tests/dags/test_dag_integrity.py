"""Every DAG imports cleanly, is configured the way the style guide asks, and parses light."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
EXPECTED = {
    "llmops_validate_data",
    "llmops_build_prompt_dataset",
    "llmops_finetune",
    "llmops_monitor",
    "llmops_example_producer",
    "llmops_rollback",
    "llmops_deploy",
    "llmops_retrain_weekly",
    "llmops_landing_check",
}
HEAVY = [
    "torch",
    "transformers",
    "peft",
    "datasets",
    "evaluate",
    "great_expectations",
    "mlflow",
    "pandas",
    # The pod operator is built when a Kubernetes training task runs (tuneops.airflow.trainer_pod).
    "kubernetes",
    "airflow.providers.cncf.kubernetes.operators.pod",
    "fastapi",
]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(REPO / "dags"))


def test_every_dag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED


def test_file_stem_is_dag_id_and_one_dag_per_file(dagbag):
    for dag in dagbag.dags.values():
        assert Path(dag.fileloc).stem == dag.dag_id
    assert sorted(Path(d.fileloc).name for d in dagbag.dags.values()) == sorted(f.name for f in DAG_FILES)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_dag_has_tags_retries_docs_and_no_catchup(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert "llmops" in dag.tags
    assert dag.doc_md and dag_id in dag.doc_md
    assert dag.catchup is False
    for task in dag.tasks:
        assert task.retries >= 2, f"{dag_id}.{task.task_id} has retries={task.retries}"


def _asset_names(condition) -> set[str]:
    """The asset names of a schedule's condition: one Asset, or an any/all of them."""
    if hasattr(condition, "objects"):
        return set().union(*(_asset_names(o) for o in condition.objects))
    return {condition.name}


def test_assets_chain_the_pipeline(dagbag):
    from tuneops.airflow.assets import (
        CHAMPION_MODEL,
        LANDING,
        PROMPT_DATASET,
        RETRAIN_REQUESTED,
        VALIDATED_BATCH,
    )

    def outlets(dag):
        return {o.name for t in dag.tasks for o in t.outlets}

    chain = [
        ("llmops_validate_data", {LANDING}, VALIDATED_BATCH),
        ("llmops_build_prompt_dataset", {VALIDATED_BATCH}, PROMPT_DATASET),
        ("llmops_finetune", {PROMPT_DATASET, RETRAIN_REQUESTED}, CHAMPION_MODEL),
        ("llmops_monitor", set(), RETRAIN_REQUESTED),
        ("llmops_deploy", {CHAMPION_MODEL}, None),
        ("llmops_retrain_weekly", set(), RETRAIN_REQUESTED),
        ("llmops_landing_check", {LANDING}, None),
    ]
    for dag_id, consumes, produces in chain:
        dag = dagbag.dags[dag_id]
        condition = getattr(dag.timetable, "asset_condition", None)
        scheduled_on = _asset_names(condition) if condition is not None else set()
        assert scheduled_on == {a.name for a in consumes}, dag_id
        if produces is not None:
            assert produces.name in outlets(dag), dag_id
    # Human corrections re-enter the pipeline at the landing asset, like any data team's batch.
    assert LANDING.name in outlets(dagbag.dags["llmops_monitor"])


def test_runs_after_validation_are_one_per_project(dagbag):
    """Every DAG an asset triggers is partitioned by project: the scheduler starts one run per
    project, and its partition key is the project. Only llmops_landing_check is not: it gets
    exactly the landing events that name no project (see tuneops.airflow.assets)."""
    for dag_id in ("llmops_validate_data", "llmops_build_prompt_dataset", "llmops_finetune", "llmops_deploy"):
        assert type(dagbag.dags[dag_id].timetable).__name__ == "PartitionedAssetTimetable", dag_id
    assert type(dagbag.dags["llmops_landing_check"].timetable).__name__ == "AssetTriggeredTimetable"
    assert "project" in dagbag.dags["llmops_validate_data"].params


def test_weekly_retraining_is_one_request_per_project(dagbag):
    assert dagbag.dags["llmops_retrain_weekly"].timetable.expression == "0 4 * * 1"


def test_finetune_task_graph_is_as_documented(dagbag):
    dag = dagbag.dags["llmops_finetune"]
    edges = {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}
    assert edges == {
        ("resolve_dataset", "plan_training"),
        ("plan_training", "plan_trials"),
        ("plan_training", "choose_compute"),
        ("plan_training", "select_trial"),
        ("plan_trials", "train_local"),
        ("plan_trials", "train_kubernetes"),
        ("plan_trials", "select_trial"),
        ("choose_compute", "train_local"),
        ("choose_compute", "train_kubernetes"),
        ("train_local", "select_trial"),
        ("train_kubernetes", "select_trial"),
        ("select_trial", "evaluate"),
        ("select_trial", "gate"),
        ("select_trial", "register_challenger"),
        ("evaluate", "gate"),
        ("evaluate", "register_challenger"),
        ("gate", "gate_passed"),
        ("gate", "register_challenger"),
        ("gate_passed", "register_challenger"),
        ("register_challenger", "route_approval"),
        ("register_challenger", "promote"),
        ("register_challenger", "record_review"),
        ("route_approval", "approve"),
        ("route_approval", "auto_approve"),
        ("approve", "promote"),
        ("auto_approve", "promote"),
        ("promote", "record_review"),
        ("select_trial", "verdict"),
        ("gate", "verdict"),
    }
    # One training task instance per sweep trial.
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert {t.task_id for t in dag.tasks if isinstance(t, MappedOperator)} == {
        "train_local",
        "train_kubernetes",
    }


def test_promotion_waits_for_a_human_unless_auto_approved_and_is_serialized(dagbag):
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from tuneops.airflow.assets import CHAMPION_MODEL, PROMOTION_POOL

    dag = dagbag.dags["llmops_finetune"]
    approve = dag.get_task("approve")
    assert isinstance(approve, ApprovalOperator)  # PromotionApproval keeps the answer for record_review
    assert approve.defaults == ["Reject"], "no answer must not promote"
    assert "reason" in approve.params
    promote = dag.get_task("promote")
    assert promote.pool == PROMOTION_POOL and promote.trigger_rule == "none_failed_min_one_success"
    assert [o.name for o in promote.outlets] == [CHAMPION_MODEL.name]
    assert dag.get_task("record_review").trigger_rule == "none_failed"


def test_rollback_is_manual_with_a_version_and_reason_and_serialized(dagbag):
    from tuneops.airflow.assets import CHAMPION_MODEL, PROMOTION_POOL

    dag = dagbag.dags["llmops_rollback"]
    assert type(dag.timetable).__name__ == "NullTimetable", "a rollback runs only when someone triggers it"
    assert {"model_name", "version", "reason"} <= set(dag.params)
    task = dag.get_task("rollback")
    assert task.pool == PROMOTION_POOL
    assert [o.name for o in task.outlets] == [CHAMPION_MODEL.name]


def test_monitor_is_scheduled_hourly_and_alerts_before_asking_for_retraining(dagbag):
    dag = dagbag.dags["llmops_monitor"]
    assert dag.timetable.expression in ("@hourly", "0 * * * *")
    edges = {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}
    assert edges == {
        ("targets", "assess"),
        ("targets", "export_feedback"),
        ("assess", "alert"),
        ("assess", "request_retrain"),
    }
    assert {t.task_id for t in dag.tasks} == {
        "targets",
        "assess",
        "alert",
        "request_retrain",
        "export_feedback",
    }


def test_parsing_dags_imports_no_heavy_module():
    """Importing every DAG file (as the DAG processor does) must not pull in ML, data, Kubernetes or web libraries."""
    code = (
        "import importlib.util, json, sys\n"
        f"for i, path in enumerate({[str(f) for f in DAG_FILES]!r}):\n"
        "    spec = importlib.util.spec_from_file_location(f'dag_{i}', path)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
