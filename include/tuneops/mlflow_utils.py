"""MLflow wiring shared by training, evaluation and the registry."""

from __future__ import annotations

from tuneops.settings import Settings


def configure_mlflow(settings: Settings) -> str:
    """Point MLflow at the configured tracking/registry URIs; returns the experiment id."""
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    exp = mlflow.get_experiment_by_name(settings.experiment)
    if exp is not None:
        return exp.experiment_id
    try:
        return mlflow.create_experiment(settings.experiment, artifact_location=settings.mlflow_artifact_location)
    except mlflow.exceptions.MlflowException:
        # Another task created it between the lookup and the create.
        return mlflow.get_experiment_by_name(settings.experiment).experiment_id


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
