"""MLflow wiring shared by training, evaluation and the registry."""

from __future__ import annotations

from pathlib import Path

from tuneops.settings import Settings


def configure_mlflow(settings: Settings) -> str:
    """Point MLflow at the configured URIs and make the project's experiment the active one.

    Without an active experiment, ``mlflow.start_run()`` logs into MLflow's "Default"
    experiment, whose artifacts land in ``./mlruns`` of whatever folder the worker runs in.
    Returns the experiment id.
    """
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    exp = mlflow.get_experiment_by_name(settings.experiment)
    if exp is None:
        try:
            mlflow.create_experiment(settings.experiment, artifact_location=settings.mlflow_artifact_location)
        except mlflow.exceptions.MlflowException:
            pass  # another task created it between the lookup and the create
        exp = mlflow.get_experiment_by_name(settings.experiment)
    mlflow.set_experiment(experiment_id=exp.experiment_id)
    return exp.experiment_id


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def log_dataset_inputs(dataset_dir: Path, uri: str, contexts: dict[str, str]) -> None:
    """Log splits of a published prompt dataset as ``mlflow.data`` inputs of the active run.

    ``contexts`` maps split name to the MLflow input context (``"training"``, ...). Each
    input is named ``<dataset>@<version>/<split>``, has the dataset version as its digest and
    the dataset URI as its source, and is tagged with the template id and hash.
    """
    import json

    import mlflow
    from mlflow.data.sources import LocalArtifactDatasetSource, S3ArtifactDatasetSource

    from tuneops.prompts import load_prompt_dataset

    manifest = json.loads((Path(dataset_dir) / "manifest.json").read_text())
    splits = load_prompt_dataset(dataset_dir)
    # An explicit source: MLflow registers the local one twice and warns when left to guess.
    source = S3ArtifactDatasetSource(uri) if uri.startswith("s3://") else LocalArtifactDatasetSource(uri)
    datasets, names, tags = [], [], []
    for split, context in contexts.items():
        if split not in splits:
            continue
        frame = splits[split].to_pandas()
        name = f"{manifest['dataset']}@{manifest['version']}/{split}"
        datasets.append(mlflow.data.from_pandas(frame, source=source, name=name, digest=manifest["version"]))
        names.append(context)
        tags.append(
            {
                "tuneops.template_id": manifest["template_id"],
                "tuneops.template_hash": manifest["template_hash"],
            }
        )
    mlflow.log_inputs(datasets=datasets, contexts=names, tags_list=tags)
