"""Credentials from Airflow connections, handed to boto3 and MLflow as the variables they read.

A deployment that keeps its S3 and MLflow credentials in Airflow connections (defined in the
UI, as ``AIRFLOW_CONN_*`` variables, or in a secrets backend) names them with:

- ``TUNEOPS_S3_CONN_ID``: an ``aws`` connection. Its credentials become ``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``); its extra's ``endpoint_url`` (MinIO,
  any S3-compatible server) becomes ``AWS_ENDPOINT_URL``, its region ``AWS_DEFAULT_REGION``.
- ``TUNEOPS_MLFLOW_CONN_ID``: an ``http`` connection to the tracking server. Its URL becomes
  ``MLFLOW_TRACKING_URI``, its login and password ``MLFLOW_TRACKING_USERNAME`` and
  ``MLFLOW_TRACKING_PASSWORD`` (the server's basic auth).

``export_connections`` resolves them once per process and replaces each ``TUNEOPS_*_CONN_ID``
with the variables it stands for, so every later boto3 client, MLflow call and subprocess
(the local trainer) uses them with no Airflow code of its own.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

S3_CONN_ENV = "TUNEOPS_S3_CONN_ID"
MLFLOW_CONN_ENV = "TUNEOPS_MLFLOW_CONN_ID"


class ConnectionSetupError(RuntimeError):
    """A named Airflow connection is missing or unusable."""


def export_connections() -> list[str]:
    """Resolve the connections this process's environment names and write their credentials into
    it. Returns the variables written (none when no connection is named, or after the first call).

    Raises ConnectionSetupError naming the connection, the variable that named it and the fix.
    """
    env = os.environ
    written: list[str] = []
    if conn_id := env.get(S3_CONN_ENV):
        written += _export(env, _s3_variables(conn_id))
        env.pop(S3_CONN_ENV, None)
    if conn_id := env.get(MLFLOW_CONN_ENV):
        written += _export(env, _mlflow_variables(conn_id))
        env.pop(MLFLOW_CONN_ENV, None)
    return written


def _export(env: MutableMapping[str, str], variables: dict[str, str | None]) -> list[str]:
    for key, value in variables.items():
        if value:
            env[key] = value
    return sorted(key for key, value in variables.items() if value)


def _get_connection(conn_id: str, variable: str):
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise ConnectionSetupError(
            f"{variable}={conn_id!r} names an Airflow connection that could not be read ({exc}); "
            f"create it (Admin > Connections, an AIRFLOW_CONN_{conn_id.upper()} variable or the secrets "
            f"backend) or unset {variable} to use the standard environment variables instead"
        ) from exc


def _s3_variables(conn_id: str) -> dict[str, str | None]:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    conn = _get_connection(conn_id, S3_CONN_ENV)
    if conn.conn_type != "aws":
        raise ConnectionSetupError(
            f"{S3_CONN_ENV}={conn_id!r} is a {conn.conn_type!r} connection; it must be of type 'aws' "
            "(login = access key id, password = secret key, extra endpoint_url for MinIO or another S3 server)"
        )
    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
    credentials = hook.get_credentials()
    return {
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
        "AWS_SESSION_TOKEN": credentials.token,
        "AWS_ENDPOINT_URL": hook.conn_config.endpoint_url,
        "AWS_DEFAULT_REGION": hook.conn_config.region_name,
    }


def _mlflow_variables(conn_id: str) -> dict[str, str | None]:
    conn = _get_connection(conn_id, MLFLOW_CONN_ENV)
    host = (conn.host or "").rstrip("/")
    if not host:
        raise ConnectionSetupError(
            f"{MLFLOW_CONN_ENV}={conn_id!r} has no host; set it to the tracking server, e.g. "
            "host 'mlflow' with port 5000, or host 'https://mlflow.example.com'"
        )
    url = host if "://" in host else f"{conn.schema or 'http'}://{host}"
    if conn.port:
        url = f"{url}:{conn.port}"
    return {
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_USERNAME": conn.login,
        "MLFLOW_TRACKING_PASSWORD": conn.password,
    }
