"""MLflow wiring shared by training, evaluation and the registry."""

from __future__ import annotations

from tuneops.core.settings import Settings


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
