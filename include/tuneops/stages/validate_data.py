"""``llmops_validate_data``: validate a landed batch and log its reports to MLflow."""

from __future__ import annotations

from pathlib import Path

from tuneops.config import load_dataset_config, load_project
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore


def validate(batch_uri: str, project: str, settings: Settings | None = None) -> dict:
    """Validate a landed batch of ``project`` (see ``tuneops.data.validation.validate_batch``) against the
    project's dataset config and log its reports to MLflow; the result names the project.

    Accepted and rejected batches alike leave an MLflow run (tag ``tuneops.kind=validation``)
    holding the GE result, the summary and, for accepted ones, the EDA report.
    """
    from tuneops.data.validation import BatchRejected, validate_batch

    if not batch_uri or not str(batch_uri).strip():
        raise ValueError(
            "batch_uri is empty: pass the file or folder of the landed batch (local path or s3://...)"
        )
    if not project:
        raise ValueError(
            f"batch {batch_uri} names no project: add 'project' to the landing event's extra (or set the "
            "'project' Param); `tuneops init-dataset` creates one"
        )
    settings = settings or load_settings()
    store = ArtifactStore.from_settings(settings)
    config = load_dataset_config(load_project(project, settings.project_dirs).dataset)
    try:
        result = validate_batch(batch_uri, config, store, settings.cache_dir, settings.landing_roots)
    except BatchRejected as exc:
        if exc.report_key:
            _log_validation(settings, store, exc.report_key, config.name, "rejected")
        raise
    if not result["reused"]:
        result["mlflow_run_id"] = _log_validation(settings, store, result["key"], config.name, "accepted")
    return {**result, "project": project}


def _log_validation(settings: Settings, store: ArtifactStore, key: str, dataset: str, outcome: str) -> str:
    import mlflow

    from tuneops.core.tracking import configure_mlflow

    configure_mlflow(settings)
    folder = store.fetch_dir(key)
    tags = {
        "tuneops.kind": "validation",
        "tuneops.dataset": dataset,
        "tuneops.outcome": outcome,
        "tuneops.batch_uri": store.uri(key),
    }
    with mlflow.start_run(run_name=f"validate-{dataset}-{Path(key).name}", tags=tags) as run:
        for name in ("validation.json", "summary.md", "meta.json"):
            if (folder / name).is_file():
                mlflow.log_artifact(str(folder / name), artifact_path="validation")
        if (folder / "eda").is_dir():
            mlflow.log_artifacts(str(folder / "eda"), artifact_path="eda")
    return run.info.run_id
