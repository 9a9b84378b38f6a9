"""Governed registration and promotion in the MLflow Model Registry, with aliases (not stages).

A candidate is registered once per model fingerprint (its weights' content hash): a rerun
finds the existing version instead of adding a duplicate. Passing candidates get the
``challenger`` alias; an approved promotion moves ``champion`` and records
``previous_champion``; a rejection and a rollback are recorded as tags on the versions
(who, when, why). Alias moves hold a lock, so concurrent promotions serialize.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from contextlib import contextmanager
from importlib.metadata import version as pkg_version
from pathlib import Path

from tuneops.config import Decoding, PromptTemplate
from tuneops.settings import Settings

log = logging.getLogger(__name__)
FINGERPRINT_TAG = "tuneops.model_fingerprint"
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous_champion"
RUNTIME_PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "mlflow",
    "pydantic",
    "jinja2",
    "pyyaml",
)


def _client(settings: Settings):
    from mlflow import MlflowClient

    from tuneops.mlflow_utils import configure_mlflow

    configure_mlflow(settings)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def git_commit() -> str:
    """The project's git commit, or "unknown" outside a checkout (e.g. in a container)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
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
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and "not found" in str(
            exc
        ):
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
    found = _client(settings).search_model_versions(
        f"name = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'"
    )
    return min(found, key=lambda v: int(v.version)) if found else None


def merge_adapter(base_path: str, adapter_dir: Path, out_dir: Path) -> Path:
    """Merge a LoRA adapter into its base weights and save model + tokenizer (safetensors)."""
    from tuneops.generation import load_model

    model, tokenizer = load_model(base_path, adapter_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def log_text_generator(
    name: str,
    model_dir: Path,
    *,
    template: PromptTemplate | None,
    max_new_tokens: int,
    decoding: Decoding,
    model_card: str,
) -> str:
    """Log ``model_dir`` (weights + tokenizer) as a pyfunc in the active MLflow run and register it as ``name``.

    Returns the new version number. The card is logged as ``model_card.md``.
    """
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        card = Path(tmp) / "model_card.md"
        card.write_text(model_card)
        mlflow.log_artifact(str(card))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"model": str(model_dir), "model_card": str(card)},
            code_paths=[str(Path(__file__).parent)],
            model_config={
                "template": json.dumps(template.model_dump()) if template is not None else "",
                "max_new_tokens": max_new_tokens,
                "decoding": json.dumps(decoding.model_dump()),
            },
            pip_requirements=[f"{p}=={pkg_version(p)}" for p in RUNTIME_PACKAGES],
            registered_model_name=name,
        )
    return str(info.registered_model_version)


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
    decoding: Decoding,
    model_card: str,
    settings: Settings,
) -> dict:
    """Register the merged candidate as a new version of ``name`` (or find the one already registered).

    Returns ``{"name", "version", "reused"}``. The version carries lineage ``tags``, the
    fingerprint and ``model_card`` (as its description and as ``model_card.md`` among the
    model's artifacts), and loads with ``mlflow.pyfunc.load_model`` in a fresh process.
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
            version = log_text_generator(
                name, merged, template=template, max_new_tokens=max_new_tokens, decoding=decoding, model_card=model_card
            )
    retry(lambda: client.update_model_version(name, version, description=model_card))
    for key, value in {**tags, FINGERPRINT_TAG: fingerprint}.items():
        retry(lambda k=key, v=value: client.set_model_version_tag(name, version, k, str(v)))
    log.info("registered %s v%s from run %s", name, version, run_id)
    return {"name": name, "version": version, "reused": False}


def retry(call, attempts: int = 5, delay: float = 0.5):
    """Run ``call``, retrying transient registry failures (server errors, a lost race on a new alias row).

    MLflow has no compare-and-set on aliases and two concurrent first sets of an alias can
    hit a unique-key violation; both are safe to repeat because every call here is idempotent.
    """
    import time

    from mlflow.exceptions import MlflowException, RestException

    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (MlflowException, RestException, OSError) as exc:
            code = getattr(exc, "error_code", "")
            # The SQL store reports a lost insert race (IntegrityError) as BAD_REQUEST.
            lost_race = code == "BAD_REQUEST" and any(
                s in str(exc) for s in ("IntegrityError", "UNIQUE", "duplicate key")
            )
            transient = (
                lost_race or isinstance(exc, OSError) or code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE")
            )
            if not transient or attempt == attempts:
                raise
            log.warning(
                "registry call failed (%s: %s); retry %d of %d", code, str(exc)[:200], attempt, attempts - 1
            )
            time.sleep(delay * 2 ** (attempt - 1))


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def _version(client, name: str, version: str):
    """The model version, or a ValueError that lists the versions there are."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    known = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    raise ValueError(
        f"model {name!r} has no version {version!r}; registered versions: {known or 'none'}. "
        "Pass one of those (see the MLflow Model Registry)"
    )


@contextmanager
def promotion_lock(name: str, owner: str, settings: Settings):
    """Serialize alias moves on ``name`` across processes and machines (a lease in the artifact store).

    Airflow's ``tuneops_promotion`` pool serializes the promotion tasks of one deployment; this
    lock also covers the CLI, other deployments and retried tasks racing a stale one.
    """
    from tuneops.locks import store_lock
    from tuneops.store import ArtifactStore

    with store_lock(ArtifactStore.from_settings(settings), f"registry-{name}", owner=owner):
        yield


def set_challenger(name: str, version: str, settings: Settings) -> None:
    client = _client(settings)
    retry(lambda: client.set_registered_model_alias(name, CHALLENGER, version))


def promote(
    name: str, version: str, approved_by: str, settings: Settings, reason: str = "", owner: str = ""
) -> dict:
    """Point ``champion`` at ``version`` and ``previous_champion`` at the old one; idempotent.

    Holds the promotion lock and re-reads the champion inside it, so two promotions racing on
    the same model never both demote the same champion: the later one demotes the earlier.
    Takes ``challenger`` off the version and records who approved, when and why on it. Returns
    ``{"name", "version", "previous", "changed"}``.
    """
    client = _client(settings)
    _version(client, name, version)
    with promotion_lock(name, owner or f"promote {name} v{version} by {approved_by}", settings):
        challenger = alias_version(name, CHALLENGER, settings)
        if challenger is not None and str(challenger.version) == str(version):
            retry(lambda: client.delete_registered_model_alias(name, CHALLENGER))  # it is (or becomes) the champion
        current = alias_version(name, CHAMPION, settings)
        if current is not None and str(current.version) == str(version):
            log.info("%s v%s is already the champion", name, version)
            return {"name": name, "version": str(version), "previous": None, "changed": False}
        if current is not None:
            retry(lambda: client.set_registered_model_alias(name, PREVIOUS, current.version))
        retry(lambda: client.set_registered_model_alias(name, CHAMPION, version))
        now_champion = alias_version(name, CHAMPION, settings)
        if now_champion is None or str(now_champion.version) != str(version):
            raise RuntimeError(
                f"{name}@champion reads v{now_champion.version if now_champion else None} right after being set to "
                f"v{version}: another writer moved it outside the promotion lock"
            )
        previous = str(current.version) if current else ""
        _tag(client, name, version, {
            "tuneops.approved_by": approved_by,
            "tuneops.approved_at": _now(),
            "tuneops.approval_reason": reason,
            "tuneops.promoted_over": previous,
        })  # fmt: skip
    log.info("%s champion -> v%s (was %s), approved by %s", name, version, previous or None, approved_by)
    return {"name": name, "version": str(version), "previous": previous or None, "changed": True}


def reject(name: str, version: str, rejected_by: str, reason: str, settings: Settings) -> dict:
    """Record a reviewer's rejection on the version and take ``challenger`` off it."""
    client = _client(settings)
    _version(client, name, version)
    _tag(client, name, version, {
        "tuneops.rejected_by": rejected_by,
        "tuneops.rejected_at": _now(),
        "tuneops.rejection_reason": reason or "(no reason given)",
    })  # fmt: skip
    challenger = alias_version(name, CHALLENGER, settings)
    if challenger is not None and str(challenger.version) == str(version):
        retry(lambda: client.delete_registered_model_alias(name, CHALLENGER))
    log.info("%s v%s rejected by %s: %s", name, version, rejected_by, reason)
    return {"name": name, "version": str(version), "rejected_by": rejected_by, "reason": reason}


def rollback(name: str, version: str | None, requested_by: str, reason: str, settings: Settings) -> dict:
    """Move ``champion`` back to ``version`` (default: ``previous_champion``), recording who and why.

    The demoted version becomes ``previous_champion``. Raises ValueError, naming the fix, when
    there is no champion, the target does not exist, or it is already the champion.
    """
    if not reason or not reason.strip():
        raise ValueError(
            "a rollback needs a reason: set the 'reason' Param (it is recorded on both versions)"
        )
    client = _client(settings)
    with promotion_lock(name, f"rollback {name} by {requested_by}", settings):
        current = alias_version(name, CHAMPION, settings)
        if current is None:
            raise ValueError(f"model {name!r} has no champion to roll back; promote a version first")
        if version is None:
            previous = alias_version(name, PREVIOUS, settings)
            if previous is None:
                raise ValueError(
                    f"model {name!r} has no previous_champion alias; pass the version to roll back to"
                )
            version = str(previous.version)
        target = _version(client, name, version)
        if str(target.version) == str(current.version):
            raise ValueError(
                f"{name} v{version} is already the champion; pick another version to roll back to"
            )
        retry(lambda: client.set_registered_model_alias(name, PREVIOUS, current.version))
        retry(lambda: client.set_registered_model_alias(name, CHAMPION, str(target.version)))
        now = _now()
        _tag(client, name, current.version, {
            "tuneops.rolled_back_by": requested_by,
            "tuneops.rolled_back_at": now,
            "tuneops.rollback_reason": reason,
            "tuneops.rolled_back_to": str(target.version),
        })  # fmt: skip
        _tag(client, name, target.version, {
            "tuneops.restored_by": requested_by,
            "tuneops.restored_at": now,
            "tuneops.restore_reason": reason,
        })  # fmt: skip
    log.info(
        "%s champion rolled back v%s -> v%s by %s: %s",
        name,
        current.version,
        target.version,
        requested_by,
        reason,
    )
    return {"name": name, "version": str(target.version), "previous": str(current.version)}


def _tag(client, name: str, version, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        retry(lambda k=key, v=value: client.set_model_version_tag(name, str(version), k, str(v)))
