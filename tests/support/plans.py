"""Training plans for tests that need one without planning a real run (no dataset, no MLflow)."""

from __future__ import annotations

from tuneops.config import load_recipe
from tuneops.contracts import Plan


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
