"""Where things live: artifact store, MLflow tracking and registry, read from the environment.

Reading settings writes nothing: credentials from Airflow connections travel in ``Settings``.

Defaults are embedded and local (a folder under ``TUNEOPS_HOME``, SQLite for MLflow);
production swaps URIs, not code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tuneops.core.connections import Credentials, resolve_connections
from tuneops.core.landing import LANDING_ROOTS_ENV, default_roots, parse_roots

DEFAULT_SERVING_IMAGE = "ghcr.io/tuneops/serving:latest"
DEFAULT_SERVING_NAMESPACE = "tuneops"


def default_recipe() -> str:
    """The recipe of ``tuneops compress`` when it names none: ``TUNEOPS_RECIPE`` (a shipped name or a
    YAML path), else the shipped ``smollm2-135m-instruct``. DAG runs take their project's recipe."""
    return os.environ.get("TUNEOPS_RECIPE") or "smollm2-135m-instruct"


@dataclass(frozen=True)
class Settings:
    home: Path
    artifact_root: str
    tracking_uri: str
    registry_uri: str
    experiment: str
    #: Folders and ``s3://`` prefixes batches may be read from (see ``tuneops.core.landing``).
    landing_roots: tuple[str, ...] = ()
    #: Protected recipe keys that DAG Params and sweeps may still set (``TUNEOPS_ALLOWED_OVERRIDES``).
    allowed_overrides: tuple[str, ...] = ()
    #: The most trials one sweep may have (``TUNEOPS_MAX_SWEEP_TRIALS``).
    max_sweep_trials: int = 32
    #: Folders whose recipe files DAG Params may name (``TUNEOPS_RECIPE_DIRS``, plus ``TUNEOPS_RECIPE``'s).
    recipe_dirs: tuple[str, ...] = ()
    #: Folders of project files (``TUNEOPS_PROJECT_DIRS``, then ``<home>/configs/projects``, then the
    #: shipped demo's while the variable is unset); see ``tuneops.config.project``.
    project_dirs: tuple[str, ...] = ()
    #: What ``llmops_deploy`` serves and where (``TUNEOPS_SERVING_IMAGE``, ``TUNEOPS_SERVING_NAMESPACE``).
    serving_image: str = DEFAULT_SERVING_IMAGE
    serving_namespace: str = DEFAULT_SERVING_NAMESPACE
    #: What the connections named by ``TUNEOPS_S3_CONN_ID`` / ``TUNEOPS_MLFLOW_CONN_ID`` resolved to,
    #: keyed by the variables they stand for (``AWS_*``, ``MLFLOW_TRACKING_*``); empty when none is named.
    credentials: Credentials = field(default_factory=Credentials, repr=False)

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def mlflow_artifact_location(self) -> str | None:
        """Artifact location for new experiments; None lets an MLflow server decide."""
        if self.tracking_uri.startswith("sqlite:") or self.tracking_uri.startswith("file:"):
            return (self.home / "mlartifacts").as_uri()
        return os.environ.get("TUNEOPS_MLFLOW_ARTIFACT_LOCATION")

    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a subprocess that needs these credentials (the local trainer).

        ``base`` (default: this process's environment) with the resolved credentials as the variables
        boto3 and MLflow read, and without the ``TUNEOPS_*_CONN_ID`` they came from, so the child uses
        them as they are and needs no Airflow of its own. Pass it as ``env=``; nothing is written.
        """
        base = os.environ if base is None else base
        return {
            **{key: value for key, value in base.items() if key not in self.credentials.replaces},
            **self.credentials,
        }


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from the environment (``TUNEOPS_*`` and the standard ``MLFLOW_*`` variables).

    ``TUNEOPS_LANDING_ROOTS`` (comma-separated folders and ``s3://`` prefixes) adds landing roots
    to the two tuneops owns, ``<TUNEOPS_HOME>/landing`` and the artifact store's ``landing/``.

    The Airflow connections that ``TUNEOPS_S3_CONN_ID`` and ``TUNEOPS_MLFLOW_CONN_ID`` name are
    resolved into ``Settings.credentials`` (see ``tuneops.core.connections``); the MLflow one's URL
    is the tracking URI. ``env`` (default: this process's environment) is only read, never written.
    Raises ConnectionSetupError for a named connection that is missing or unusable.
    """
    env = dict(os.environ if env is None else env)
    credentials = resolve_connections(env)
    env.update(credentials)
    home = Path(env.get("TUNEOPS_HOME") or Path.home() / ".tuneops").expanduser().resolve()
    tracking_uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    artifact_root = env.get("TUNEOPS_ARTIFACT_ROOT") or str(home / "artifacts")
    extra_roots = parse_roots(env.get(LANDING_ROOTS_ENV))
    return Settings(
        home=home,
        artifact_root=artifact_root,
        tracking_uri=tracking_uri,
        registry_uri=env.get("MLFLOW_REGISTRY_URI") or tracking_uri,
        experiment=env.get("TUNEOPS_EXPERIMENT") or "tuneops",
        landing_roots=tuple(dict.fromkeys(default_roots(home, artifact_root) + extra_roots)),
        allowed_overrides=_comma_list(env, "TUNEOPS_ALLOWED_OVERRIDES"),
        max_sweep_trials=_positive_int(env, "TUNEOPS_MAX_SWEEP_TRIALS", 32),
        recipe_dirs=_recipe_dirs(env),
        project_dirs=_project_dirs(env, home),
        serving_image=env.get("TUNEOPS_SERVING_IMAGE") or DEFAULT_SERVING_IMAGE,
        serving_namespace=env.get("TUNEOPS_SERVING_NAMESPACE") or DEFAULT_SERVING_NAMESPACE,
        credentials=credentials,
    )


def _comma_list(env: dict[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _project_dirs(env: dict[str, str], home: Path) -> tuple[str, ...]:
    """``TUNEOPS_PROJECT_DIRS``, then ``<home>/configs/projects``; without the variable, the shipped
    demo project's folder last (a deployment that lists its own folders gets only its projects)."""
    dirs = [*_comma_list(env, "TUNEOPS_PROJECT_DIRS"), str(home / "configs" / "projects")]
    if not env.get("TUNEOPS_PROJECT_DIRS"):
        dirs.append(str(Path(__file__).parents[1] / "configs" / "projects"))
    return tuple(dict.fromkeys(dirs))


def _recipe_dirs(env: dict[str, str]) -> tuple[str, ...]:
    dirs = list(_comma_list(env, "TUNEOPS_RECIPE_DIRS"))
    default = env.get("TUNEOPS_RECIPE") or ""
    if default.endswith((".yaml", ".yml")):  # the deployment's own recipe file is trusted, and its folder
        dirs.append(str(Path(default).expanduser().absolute().parent))
    return tuple(dict.fromkeys(str(Path(d).expanduser().absolute()) for d in dirs))


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"{name}={raw[:40]!r} is not a positive integer; set it to one, e.g. {name}={default}"
        )
    return value
