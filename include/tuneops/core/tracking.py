"""MLflow wiring shared by training, evaluation and the registry."""

from __future__ import annotations

import os

from tuneops.core.settings import Settings

#: The credentials MLflow's REST client reads, from the environment only, at every request.
MLFLOW_AUTH_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def configure_mlflow(settings: Settings) -> str:
    """Point MLflow at the configured URIs and make the project's experiment the active one.

    Without an active experiment, ``mlflow.start_run()`` logs into MLflow's "Default"
    experiment, whose artifacts land in ``./mlruns`` of whatever folder the worker runs in.
    Returns the experiment id.

    The tracking server's basic-auth login in ``settings.credentials`` (from the connection that
    ``TUNEOPS_MLFLOW_CONN_ID`` names) becomes ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` in this
    process's environment. This is the one place tuneops writes credentials there, because it is
    MLflow's only channel for them: its REST client (``mlflow.utils.credentials``) reads them from
    the environment at every request and takes no argument for them, and its request-header and
    request-auth providers are found only through package entry points. Without a connection the
    variables are left as they are; nothing else in ``settings`` goes into the environment.
    """
    import mlflow

    for variable in MLFLOW_AUTH_VARIABLES:
        if variable in settings.credentials:
            os.environ[variable] = settings.credentials[variable]
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
