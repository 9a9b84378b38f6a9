"""``llmops_build_prompt_dataset``: validated batches in, a versioned prompt dataset out (logged to MLflow)."""

from __future__ import annotations

from tuneops.config import (
    ConfigError,
    ProjectConfig,
    load_dataset_config,
    load_project,
    load_template,
    project_for_dataset,
)
from tuneops.contracts import MANIFEST_FILE
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore
from tuneops.stages.common import published_key


def build_prompts(
    validated_uris: list[str], project: str | None = None, settings: Settings | None = None
) -> dict:
    """Build ``project``'s prompt dataset from these validated batches and the ones its config accumulates.

    Without a project, it is the one project whose dataset the batches belong to. Every batch must
    be one of the project's dataset: a batch of another dataset is refused, naming both, so no row
    crosses into another project's dataset. See ``tuneops.data.prompts``. A new version is logged to
    MLflow (tag ``tuneops.kind=prompt_dataset``) with its manifest and each split as an
    ``mlflow.data`` input whose digest is the version. The result names the project.
    """
    from tuneops.data.prompts import build_prompt_dataset, select_batches

    settings = settings or load_settings()
    store = ArtifactStore.from_settings(settings)
    given = [published_key(uri, store) for uri in validated_uris]
    resolved = _project_of(given, project, settings)
    config = load_dataset_config(resolved.dataset)
    foreign = [store.uri(k) for k in given if not k.startswith(f"validated/{config.name}/")]
    if foreign:
        raise ConfigError(
            f"project '{resolved.name}' builds dataset '{config.name}', but these batches were validated for "
            f"another dataset: {', '.join(foreign)}; hand each batch on with its own project"
        )
    keys = select_batches(given, config, store)
    result = build_prompt_dataset(keys, config, load_template(config.template), store, settings.cache_dir)
    result["project"] = resolved.name
    if not result["reused"]:
        result["mlflow_run_id"] = _log_prompt_dataset(settings, store, result)
    return result


def _project_of(keys: list[str], project: str | None, settings: Settings) -> ProjectConfig:
    if project:
        return load_project(project, settings.project_dirs)
    datasets = sorted({k.split("/")[1] for k in keys if k.startswith("validated/")})
    if len(datasets) != 1:
        raise ConfigError(f"the batches belong to datasets {datasets}: name the project")
    return project_for_dataset(datasets[0], settings.project_dirs)


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
        "tuneops.project": result["project"],
    }
    with mlflow.start_run(run_name=f"prompts-{result['dataset']}-{result['version']}", tags=tags) as run:
        mlflow.log_artifact(str(folder / MANIFEST_FILE), artifact_path="dataset")
        mlflow.log_metrics({f"rows.{k}": v for k, v in result["counts"].items()})
        mlflow.log_metrics({f"dropped.{k}": v for k, v in result["dropped"].items()})
        log_dataset_inputs(folder, result["uri"], {split: split for split in result["counts"]})
    return run.info.run_id
