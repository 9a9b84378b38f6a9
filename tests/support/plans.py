"""Training plans for tests that need one without planning a real run (no dataset, no MLflow)."""

from __future__ import annotations

from tuneops.config import load_recipe
from tuneops.contracts import GateDecision, Plan, SweepChoice, TrainingSummary


def make_plan(recipe_ref: str = "tiny-local", overrides: dict | None = None, **fields) -> Plan:
    """A plan for ``recipe_ref`` with ``overrides`` resolved, as ``plan_training``/``plan_trials`` make one."""
    recipe = load_recipe(recipe_ref, overrides or None)
    values = {
        "recipe_ref": recipe_ref,
        "recipe": recipe,
        "overrides": overrides or {},
        "dataset_uri": "/d",
        "dataset_version": "v",
        "template_id": "t",
        "template_hash": "h",
        "output_uri": "/o",
        "mlflow_run_id": "r",
        "compute": recipe.compute.backend,
    }
    return Plan(**{**values, **fields})


def make_choice(plan: Plan) -> SweepChoice:
    """The sweep's choice of ``plan``, with a training summary as the trainer would print it."""
    summary = TrainingSummary(
        output_uri=plan.output_uri,
        base_model=plan.recipe.base_model,
        base_model_path=plan.recipe.base_model,
        dataset_uri=plan.dataset_uri,
        dataset_version=plan.dataset_version,
        recipe_hash=plan.recipe_hash,
        mlflow_run_id=plan.mlflow_run_id,
        steps=10,
        stopped_early_at=None,
        device="cuda",
        world_size=1,
        final_train_loss=1.0,
        eval_loss=1.0,
        train_examples=100,
        dropped_too_long=0,
        padding_efficiency=0.9,
        tokens_per_s=1000.0,
        resumed_from_step=0,
        train_seconds=60.0,
        trainable_params=1000,
        peak_memory_gib=10.0,
        adapter_sha256="a" * 64,
    )
    return SweepChoice(plan=plan, summary=summary, table=[])


#: A gate decision that passed, for jobs that need one.
DECISION = GateDecision(
    passed=True,
    deciding_rule="all rules passed",
    reasons=[],
    checks=[],
    table=[],
    champion_version=None,
    text="",
    report_uri="s3://tuneops/artifacts/gates/x/report.html",
)


#: The shipped GPU recipe's plan, as the pod tests render it: run-scoped URIs on S3.
GPU_PLAN = make_plan(
    "qwen2.5-0.5b-instruct",
    dataset_uri="s3://tuneops/artifacts/datasets/support_tickets/0123456789abcdef",
    output_uri="s3://tuneops/artifacts/candidates/abc-0123456789abcdef",
    mlflow_run_id="5f0c1e2d3c4b5a69",
)
