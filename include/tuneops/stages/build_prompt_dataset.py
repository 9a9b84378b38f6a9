"""``llmops_build_prompt_dataset``: validated batches in, a versioned prompt dataset out (logged to MLflow)."""

from __future__ import annotations

from tuneops.config import load_dataset_config, load_template
from tuneops.contracts import MANIFEST_FILE
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore
from tuneops.stages.common import published_key


def build_prompts(validated_uris: list[str], dataset: str, settings: Settings | None = None) -> dict:
    """Build the prompt dataset from these validated batches and the ones the config accumulates.

    See ``tuneops.data.prompts``. A new version is logged to MLflow (tag ``tuneops.kind=prompt_dataset``)
    with its manifest and each split as an ``mlflow.data`` input whose digest is the version.
    """
    from tuneops.data.prompts import build_prompt_dataset, select_batches

    settings = settings or load_settings()
    store = ArtifactStore.from_settings(settings)
    config = load_dataset_config(dataset)
    keys = select_batches([published_key(uri, store) for uri in validated_uris], config, store)
    result = build_prompt_dataset(keys, config, load_template(config.template), store, settings.cache_dir)
    if not result["reused"]:
        result["mlflow_run_id"] = _log_prompt_dataset(settings, store, result)
    return result


def _log_prompt_dataset(settings: Settings, store: ArtifactStore, result: dict) -> str:
    import mlflow

    from tuneops.core.tracking import configure_mlflow
    from tuneops.data.prompts import log_dataset_inputs

    configure_mlflow(settings)
    folder = store.fetch_dir(result["key"])
    tags = {
        "tuneops.kind": "prompt_dataset",
        "tuneops.dataset": result["dataset"],
        "tuneops.dataset_version": result["version"],
        "tuneops.dataset_uri": result["uri"],
        "tuneops.template_id": result["template_id"],
        "tuneops.template_hash": result["template_hash"],
    }
    with mlflow.start_run(run_name=f"prompts-{result['dataset']}-{result['version']}", tags=tags) as run:
        mlflow.log_artifact(str(folder / MANIFEST_FILE), artifact_path="dataset")
        mlflow.log_metrics({f"rows.{k}": v for k, v in result["counts"].items()})
        mlflow.log_metrics({f"dropped.{k}": v for k, v in result["dropped"].items()})
        log_dataset_inputs(folder, result["uri"], {split: split for split in result["counts"]})
    return run.info.run_id
