"""Credentials from Airflow connections, resolved into the variables they stand for; written nowhere.

A deployment that keeps its S3 and MLflow credentials in Airflow connections (defined in the
UI, as ``AIRFLOW_CONN_*`` variables, or in a secrets backend) names them with:

- ``TUNEOPS_S3_CONN_ID``: an ``aws`` connection. Its credentials stand for ``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``); its extra's ``endpoint_url`` (MinIO,
  any S3-compatible server) for ``AWS_ENDPOINT_URL``, its region for ``AWS_DEFAULT_REGION``.
- ``TUNEOPS_MLFLOW_CONN_ID``: an ``http`` connection to the tracking server. Its URL stands for
  ``MLFLOW_TRACKING_URI``, its login and password for ``MLFLOW_TRACKING_USERNAME`` and
  ``MLFLOW_TRACKING_PASSWORD`` (the server's basic auth).

``resolve_connections`` returns them as ``Credentials``, a mapping keyed by those variable names,
and leaves ``os.environ`` alone. ``tuneops.core.settings.load_settings`` carries the result; the
artifact store hands it to boto3 as arguments, ``tuneops.core.tracking.configure_mlflow`` to
MLflow, and ``Settings.child_env`` to a subprocess (the local trainer) as its environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

S3_CONN_ENV = "TUNEOPS_S3_CONN_ID"
MLFLOW_CONN_ENV = "TUNEOPS_MLFLOW_CONN_ID"


class ConnectionSetupError(RuntimeError):
    """A named Airflow connection is missing or unusable."""


class Credentials(Mapping[str, str]):
    """Variables resolved from connections (``{"AWS_ACCESS_KEY_ID": ..., ...}``), read-only.

    ``replaces`` names the ``TUNEOPS_*_CONN_ID`` variables they were resolved from. The repr and
    str show variable names only, so a logged ``Credentials`` (or anything holding one) shows no
    secret.
    """

    def __init__(self, values: Mapping[str, str] | None = None, replaces: tuple[str, ...] = ()):
        self._values = dict(values or {})
        self.replaces = replaces

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return self._values == other._values and self.replaces == other.replaces

    def __hash__(self) -> int:
        return hash((frozenset(self._values.items()), self.replaces))

    def __repr__(self) -> str:
        return f"Credentials({', '.join(sorted(self._values))})"


def resolve_connections(env: Mapping[str, str] | None = None) -> Credentials:
    """The credentials of the connections that ``env`` (default: this process's environment) names
    with ``TUNEOPS_S3_CONN_ID`` and ``TUNEOPS_MLFLOW_CONN_ID``; empty when it names none.

    The connections themselves are read through Airflow (``AIRFLOW_CONN_*``, the metadata DB or
    a secrets backend). Nothing is written anywhere. Raises ConnectionSetupError naming the
    connection, the variable that named it and the fix.
    """
    env = os.environ if env is None else env
    values: dict[str, str] = {}
    replaces: list[str] = []
    if conn_id := env.get(S3_CONN_ENV):
        values.update(resolve_s3_connection(conn_id))
        replaces.append(S3_CONN_ENV)
    if conn_id := env.get(MLFLOW_CONN_ENV):
        values.update(resolve_mlflow_connection(conn_id))
        replaces.append(MLFLOW_CONN_ENV)
    return Credentials(values, tuple(replaces))


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


def resolve_s3_connection(conn_id: str) -> dict[str, str]:
    """The ``AWS_*`` variables the ``aws`` connection ``conn_id`` stands for (only those it sets).

    Raises ConnectionSetupError when it cannot be read or is not of type ``aws``.
    """
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    conn = _get_connection(conn_id, S3_CONN_ENV)
    if conn.conn_type != "aws":
        raise ConnectionSetupError(
            f"{S3_CONN_ENV}={conn_id!r} is a {conn.conn_type!r} connection; it must be of type 'aws' "
            "(login = access key id, password = secret key, extra endpoint_url for MinIO or another S3 server)"
        )
    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
    credentials = hook.get_credentials()
    return _set_only(
        {
            "AWS_ACCESS_KEY_ID": credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
            "AWS_SESSION_TOKEN": credentials.token,
            "AWS_ENDPOINT_URL": hook.conn_config.endpoint_url,
            "AWS_DEFAULT_REGION": hook.conn_config.region_name,
        }
    )


def resolve_mlflow_connection(conn_id: str) -> dict[str, str]:
    """The ``MLFLOW_TRACKING_*`` variables the ``http`` connection ``conn_id`` stands for.

    Raises ConnectionSetupError when it cannot be read or has no host.
    """
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
    return _set_only(
        {
            "MLFLOW_TRACKING_URI": url,
            "MLFLOW_TRACKING_USERNAME": conn.login,
            "MLFLOW_TRACKING_PASSWORD": conn.password,
        }
    )


def _set_only(variables: dict[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in variables.items() if value}
