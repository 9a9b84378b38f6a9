"""Governed registration and promotion in the MLflow Model Registry, with aliases (not stages).

A candidate is registered once per model fingerprint (its weights' content hash): a rerun
finds the existing version instead of adding a duplicate. Passing candidates get the
``challenger`` alias; promotion moves ``champion`` and records ``previous_champion``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from importlib.metadata import version as pkg_version
from pathlib import Path

from tuneops.config import PromptTemplate
from tuneops.settings import Settings

log = logging.getLogger(__name__)
FINGERPRINT_TAG = "tuneops.model_fingerprint"
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous_champion"
RUNTIME_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "mlflow", "pydantic", "jinja2", "pyyaml")


def _client(settings: Settings):
    from mlflow import MlflowClient

    from tuneops.mlflow_utils import configure_mlflow

    configure_mlflow(settings)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def git_commit() -> str:
    """The project's git commit, or "unknown" outside a checkout (e.g. in a container)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def alias_version(name: str, alias: str, settings: Settings):
    """The model version behind ``name@alias``, or None if the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return _client(settings).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        # A missing model is RESOURCE_DOES_NOT_EXIST, a missing alias INVALID_PARAMETER_VALUE;
        # anything else (an unreachable server, say) must not read as "no champion yet".
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and "not found" in str(exc):
            return None
        raise


def download_version(name: str, version: str, settings: Settings) -> Path:
    """Download a registered version and return the folder holding its transformers weights."""
    import mlflow

    _client(settings)
    dest = settings.cache_dir / "registry" / name / str(version)
    if not (dest / "artifacts" / "model" / "config.json").is_file():
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dest))
    return dest / "artifacts" / "model"


def find_by_fingerprint(name: str, fingerprint: str, settings: Settings):
    """The first version of ``name`` registered with these exact weights, or None."""
    found = _client(settings).search_model_versions(f"name = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def merge_adapter(base_path: str, adapter_dir: Path, out_dir: Path) -> Path:
    """Merge a LoRA adapter into its base weights and save model + tokenizer (safetensors)."""
    from tuneops.generation import load_model

    model, tokenizer = load_model(base_path, adapter_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def register_candidate(
    *,
    name: str,
    base_path: str,
    adapter_dir: Path,
    fingerprint: str,
    run_id: str,
    template: PromptTemplate,
    tags: dict[str, str],
    max_new_tokens: int,
    settings: Settings,
) -> dict:
    """Register the merged candidate as a new version of ``name`` (or find the one already registered).

    Returns ``{"name", "version", "reused"}``. The version carries lineage ``tags`` and the
    fingerprint, and loads with ``mlflow.pyfunc.load_model`` in a fresh process.
    """
    import mlflow

    client = _client(settings)
    existing = find_by_fingerprint(name, fingerprint, settings)
    if existing is not None:
        log.info("candidate %s is already registered as %s v%s", fingerprint[:12], name, existing.version)
        return {"name": name, "version": str(existing.version), "reused": True}
    with tempfile.TemporaryDirectory() as tmp:
        merged = merge_adapter(base_path, adapter_dir, Path(tmp) / "model")
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts={"model": str(merged)},
                code_paths=[str(Path(__file__).parent)],
                model_config={"template": json.dumps(template.model_dump()), "max_new_tokens": max_new_tokens},
                pip_requirements=[f"{p}=={pkg_version(p)}" for p in RUNTIME_PACKAGES],
                registered_model_name=name,
            )
    version = str(info.registered_model_version)
    for key, value in {**tags, FINGERPRINT_TAG: fingerprint}.items():
        client.set_model_version_tag(name, version, key, str(value))
    log.info("registered %s v%s from run %s", name, version, run_id)
    return {"name": name, "version": version, "reused": False}


def set_challenger(name: str, version: str, settings: Settings) -> None:
    _client(settings).set_registered_model_alias(name, CHALLENGER, version)


def promote(name: str, version: str, approved_by: str, settings: Settings) -> dict:
    """Point ``champion`` at ``version`` and ``previous_champion`` at the old one; idempotent."""
    client = _client(settings)
    current = alias_version(name, CHAMPION, settings)
    if current is not None and str(current.version) == str(version):
        log.info("%s v%s is already the champion", name, version)
        return {"name": name, "version": str(version), "previous": None, "changed": False}
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS, current.version)
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "tuneops.approved_by", approved_by)
    log.info("%s champion -> v%s (was %s)", name, version, current.version if current else None)
    return {"name": name, "version": str(version), "previous": str(current.version) if current else None, "changed": True}
