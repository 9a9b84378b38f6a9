"""Governed registration and promotion in the MLflow Model Registry, with aliases (not stages).

A candidate is registered once per model fingerprint (its weights' content hash): a rerun
finds the existing version instead of adding a duplicate. Registration holds a lock per
candidate and creates the version in one registry call that carries its description, lineage,
fingerprint and weights hash, so a version is never seen half-made. Passing candidates get the
``challenger`` alias; an approved promotion moves ``champion`` and records
``previous_champion``; a rejection and a rollback are recorded as tags on the versions
(who, when, why). Alias moves hold a lock, so concurrent promotions serialize.

A version registered by ``register_candidate`` holds the LoRA adapter (safetensors) with its
tokenizer, the prompt template, the decoding, and a reference to its base model (id, content
fingerprint, where it is stored), not merged weights: megabytes per version where a merged copy of
a 7B model would be ~15 GB. A merged export is made only where a whole model is needed (serving,
compression), once per fingerprint, in the artifact store (``exports/``). Versions holding full
weights (registered before, or with ``log_text_generator`` and no base) still load as they are.

tuneops' own loaders read a version as data (``load_version_files``): its adapter or weights,
tokenizer and serving config, checked against the hashes recorded at registration, and its base
checked against the recorded fingerprint. The version's
MLflow "models from code" flavour (``pyfunc_model.py`` and the bundled ``code/``) is there for
other MLflow clients and is never executed by tuneops.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version as pkg_version
from pathlib import Path

from tuneops.config import Decoding
from tuneops.core.lineage import CONFIG_TAG, FINGERPRINT_TAG, WEIGHTS_TAG
from tuneops.core.settings import Settings
from tuneops.core.templates import PromptTemplate

log = logging.getLogger(__name__)
# A registration uploads its adapter under its lock (longer on a slow store): the lease
# is renewed while it runs, and a second registrant of the same candidate waits up to half an hour.
REGISTER_LEASE_SECONDS = 120
REGISTER_WAIT_SECONDS = 1800
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous_champion"
BASE_TAG = "tuneops.base_fingerprint"  # set on adapter versions: the base they need
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


def registry_client(settings: Settings):
    from mlflow import MlflowClient

    from tuneops.core.tracking import configure_mlflow

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
        return registry_client(settings).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        # A missing model is RESOURCE_DOES_NOT_EXIST, a missing alias INVALID_PARAMETER_VALUE;
        # anything else (an unreachable server, say) must not read as "no champion yet".
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and "not found" in str(
            exc
        ):
            return None
        raise


class ModelIntegrityError(ValueError):
    """A registered version's files are not the ones recorded when it was registered."""


@dataclass(frozen=True)
class RegisteredModelFiles:
    """A registered version read as data: where its weights are and how the gate generated with it."""

    name: str
    version: str
    #: A whole model (transformers weights + tokenizer): the version's own weights, or the merged
    #: export of its adapter; None for an adapter version read with ``export=False``.
    path: Path | None
    template: PromptTemplate | None
    decoding: Decoding
    max_new_tokens: int
    weights_sha256: str  # of the version's own files: the adapter folder, or the full weights
    #: The adapter folder (safetensors + tokenizer), checked against ``weights_sha256``; None for full weights.
    adapter_path: Path | None = None
    #: The base model the adapter was trained on: ``{"ref", "fingerprint", "uri", "mlflow_uri"}``
    #: (``mlflow_uri`` absent for a hub id); None for full weights.
    base: dict | None = None


def load_version_files(
    name: str, version: str, settings: Settings, export: bool = True
) -> RegisteredModelFiles:
    """Fetch ``name`` v``version``'s adapter (or weights), tokenizer and serving config as data, verified.

    Downloads only ``artifacts/model/**`` and the ``MLmodel`` file (whose ``model_config`` holds the
    template, decoding, max_new_tokens and the base reference, read with ``yaml.safe_load``); nothing
    downloaded is imported or executed. The folder must hash to the version's ``tuneops.weights_sha256``
    tag and the config to its ``tuneops.model_config_sha256``. A verified copy is cached under
    ``settings.cache_dir`` and re-hashed on every call; a cached copy that no longer matches is
    fetched again. For an adapter version, ``path`` is its merged export (``merged_export``) unless
    ``export`` is False (evaluation loads base and adapter itself).

    Raises ValueError (listing the versions there are) for an unknown version, ModelIntegrityError
    when the version has no recorded hashes or its files do not match them, and
    ``tuneops.models.base_model.BaseModelError`` when its base model is gone or other weights.
    """
    import yaml

    from tuneops.core.hashing import hash_dir, hash_json

    client = registry_client(settings)
    mv = _version(client, name, version)
    expected, config_hash = mv.tags.get(WEIGHTS_TAG), mv.tags.get(CONFIG_TAG)
    if not (expected and config_hash):
        raise ModelIntegrityError(
            f"{name} v{version} has no {WEIGHTS_TAG} or {CONFIG_TAG} tag, so its files cannot be checked before "
            "use: it was registered before tuneops recorded those hashes, or not by tuneops. Register the "
            "candidate again (rerun llmops_finetune) and promote the new version, or, if you trust the files "
            f"as stored now, record their hashes: tuneops record-hashes --model {name} --version {version} --by <you>"
        )
    # One folder per recorded hash, so a version re-registered elsewhere never reads a stale copy.
    dest = settings.cache_dir / "registry" / name / str(version) / expected[:16]
    weights = dest / "artifacts" / "model"
    if not (weights.is_dir() and hash_dir(weights) == expected):
        _fetch_version(name, str(version), dest, expected)
    mlmodel = yaml.safe_load((dest / "MLmodel").read_text()) or {}
    config = mlmodel.get("flavors", {}).get("python_function", {}).get("config") or {}
    if hash_json(config) != config_hash:
        raise ModelIntegrityError(
            f"{name} v{version}: the model_config in its MLmodel (template, decoding, max_new_tokens) is not the "
            f"one recorded in {CONFIG_TAG} at registration; the stored file was modified. Refusing to load it. "
            "Roll back to another version or register the candidate again"
        )
    template = config.get("template")
    decoding = config.get("decoding")
    files = RegisteredModelFiles(
        name=name,
        version=str(version),
        path=weights,
        template=PromptTemplate.model_validate(json.loads(template)) if template else None,
        decoding=Decoding.model_validate(json.loads(decoding)) if decoding else Decoding(),
        max_new_tokens=int(config.get("max_new_tokens", 48)),
        weights_sha256=expected,
    )
    if not config.get("base"):
        return files
    files = replace(files, path=None, adapter_path=weights, base=json.loads(config["base"]))
    return replace(files, path=merged_export(files, settings)) if export else files


EXPORT_FILE = "export.json"
EXPORT_TAG = "tuneops.export_sha256"  # on an adapter version: the hash of its merged export's files


def export_fingerprint(base_fingerprint: str, adapter_sha256: str) -> str:
    """The fingerprint of a base + adapter pair: it names the merged export (and, over the ``base:``
    form of the base's fingerprint, the candidate in evaluation)."""
    from tuneops.core.hashing import hash_json

    return hash_json({"base": base_fingerprint, "adapter": adapter_sha256})


def merged_export(files: RegisteredModelFiles, settings: Settings) -> Path:
    """The adapter of ``files`` merged into its base, as a whole-model folder, made once per fingerprint.

    Published in the artifact store under ``exports/<fingerprint>`` (with ``export.json``, what it was
    made from), so every serving replica and compression job reuses it. It is trusted only as far as
    the registry says: its files must hash to the version's ``tuneops.export_sha256`` tag, which only
    the process that made it from the verified adapter and base sets. A local copy of an S3 export
    that does not match is downloaded again; an export that still does not, or that no tag vouches
    for, is made again from the adapter and the base (checked against the recorded fingerprint; read
    where the reference says, else from its MLflow copy). A process that may not write the store or
    the registry (a read-only serving replica) keeps what it made in its local cache instead.
    """
    from tuneops.core.hashing import hash_dir
    from tuneops.core.store import MARKER, ArtifactStore

    client = registry_client(settings)
    recorded = client.get_model_version(files.name, files.version).tags.get(EXPORT_TAG)
    fingerprint = export_fingerprint(files.base["fingerprint"], files.weights_sha256)
    store = ArtifactStore.from_settings(settings)
    key = f"exports/{fingerprint[:24]}"

    def matches(folder: Path) -> bool:
        return hash_dir(folder, exclude=(EXPORT_FILE, MARKER)) == recorded

    local = settings.cache_dir / "exports" / fingerprint[:24]
    if recorded and local.is_dir() and matches(local):
        return local
    if recorded and store.exists(key):
        for _ in range(2):
            folder = store.fetch_dir(key)
            if matches(folder):
                return folder
            store.evict_cached(key)  # this machine's download may be the damaged copy: once more
        log.warning(
            "merged export %s is not the one %s v%s recorded; making it again",
            store.uri(key),
            files.name,
            files.version,
        )
    made = _make_export(files, fingerprint, local, settings)
    digest = hash_dir(made, exclude=(EXPORT_FILE, MARKER))
    try:
        if store.exists(key) and hash_dir(store.fetch_dir(key), exclude=(EXPORT_FILE, MARKER)) != digest:
            store.remove_dir(key)  # not what the adapter and base make: replaced by what they do
        store.publish_dir(made, key)
        if recorded != digest:
            set_version_tags(client, files.name, files.version, {EXPORT_TAG: digest})
    except Exception as exc:  # a read-only replica: serve the verified local export all the same
        log.warning(
            "could not publish the merged export of %s v%s (%s); using the local copy",
            files.name,
            files.version,
            exc,
        )
        return made
    log.info(
        "merged export of %s v%s on base %s: %s", files.name, files.version, files.base["ref"], store.uri(key)
    )
    if store.is_s3:
        return made  # the local copy is this machine's cache of what was just uploaded
    shutil.rmtree(made, ignore_errors=True)  # a local store holds it already: one copy on disk
    return store.fetch_dir(key)


def _make_export(files: RegisteredModelFiles, fingerprint: str, dest: Path, settings: Settings) -> Path:
    """Merge the verified adapter into its verified base at ``dest`` (staged, then renamed into place)."""
    from tuneops.models.base_model import BaseModelError, fetch_base

    try:
        base_path = fetch_base(files.base, settings.cache_dir)
    except BaseModelError:
        if not files.base.get("mlflow_uri"):
            raise
        base_path = fetch_logged_base(files.base, settings.cache_dir)  # the copy registration logged
    staging = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}")
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        merge_adapter(base_path, files.adapter_path, staging)
        record = {"fingerprint": fingerprint, "base": files.base, "adapter_sha256": files.weights_sha256}
        (staging / EXPORT_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _fetch_version(name: str, version: str, dest: Path, expected: str) -> None:
    """Download the version's weights and MLmodel beside ``dest``, verify them, then move them into place."""
    import mlflow

    from tuneops.core.hashing import hash_dir

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}")
    try:
        for part in ("artifacts/model", "MLmodel"):
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}/{part}", dst_path=str(staging)
            )
        actual = hash_dir(staging / "artifacts" / "model")
        if actual != expected:
            raise ModelIntegrityError(
                f"{name} v{version}: its weights in the artifact store (models:/{name}/{version}/artifacts/model) "
                f"hash to {actual}, but {WEIGHTS_TAG} recorded {expected} at registration. The stored files were "
                "modified or damaged after registration; refusing to load them. Roll back to another version "
                "or register the candidate again"
            )
        shutil.rmtree(dest, ignore_errors=True)
        try:
            staging.rename(dest)
        except OSError:  # another process published the same verified files first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def record_hashes(name: str, version: str, recorded_by: str, settings: Settings) -> dict:
    """Record the weights and config hashes of a version registered before tuneops recorded them.

    For versions from an older tuneops (a serving champion, say): whoever runs this vouches for the
    files as they are stored now, and is recorded as having done so. Nothing downloaded is executed.
    Refuses a version that already has hashes (those are never overwritten). Returns the tags set.
    """
    import mlflow
    import yaml

    from tuneops.core.hashing import hash_dir, hash_json

    if not recorded_by or not recorded_by.strip():
        raise ValueError(
            "say who vouches for the stored files: pass --by <you> (it is recorded on the version)"
        )
    client = registry_client(settings)
    mv = _version(client, name, version)
    if WEIGHTS_TAG in mv.tags or CONFIG_TAG in mv.tags:
        raise ValueError(f"{name} v{version} already has recorded hashes; they are never overwritten")
    with tempfile.TemporaryDirectory() as tmp:
        for part in ("artifacts/model", "MLmodel"):
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}/{part}", dst_path=tmp)
        mlmodel = yaml.safe_load((Path(tmp) / "MLmodel").read_text()) or {}
        config = mlmodel.get("flavors", {}).get("python_function", {}).get("config") or {}
        tags = {
            WEIGHTS_TAG: hash_dir(Path(tmp) / "artifacts" / "model"),
            CONFIG_TAG: hash_json(config),
            "tuneops.hashes_recorded_by": recorded_by,
            "tuneops.hashes_recorded_at": _now(),
        }
    set_version_tags(client, name, version, tags)
    log.info("recorded the hashes of %s v%s, vouched for by %s", name, version, recorded_by)
    return tags


def download_version(name: str, version: str, settings: Settings) -> Path:
    """A whole-model folder of a registered version, verified: its weights, or its adapter's merged
    export (see ``load_version_files``)."""
    return load_version_files(name, version, settings).path


def find_by_fingerprint(name: str, fingerprint: str, settings: Settings):
    """The first version of ``name`` registered with these exact weights, or None."""
    found = registry_client(settings).search_model_versions(
        f"name = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'"
    )
    return min(found, key=lambda v: int(v.version)) if found else None


BASE_EXPERIMENT = "tuneops-base-models"
BASE_LOGGED_TAG = "tuneops.base_logged"


def log_base_model(reference: dict, base_path: str, settings: Settings) -> dict:
    """``reference`` plus ``mlflow_uri``: the base model's files as an MLflow artifact, logged once per
    fingerprint (a run in the ``tuneops-base-models`` experiment), so any MLflow client that can read
    the registry can load an adapter version with no access to tuneops' artifact store. A hub id is
    left as it is: clients load it by name, as MLflow's own PEFT flavour does.
    """
    if not Path(base_path).is_dir():
        return reference
    from mlflow.exceptions import MlflowException

    from tuneops.core.tracking import configure_mlflow

    configure_mlflow(settings)
    client = registry_client(settings)
    experiment = client.get_experiment_by_name(BASE_EXPERIMENT)
    if experiment is None:
        try:
            client.create_experiment(BASE_EXPERIMENT, artifact_location=_base_artifact_location(settings))
        except MlflowException:
            pass  # created by another registration meanwhile
        experiment = client.get_experiment_by_name(BASE_EXPERIMENT)
    fingerprint = reference["fingerprint"]
    search = f"tags.`{BASE_TAG}` = '{fingerprint}' and tags.`{BASE_LOGGED_TAG}` = 'true'"

    def logged():
        runs = client.search_runs(
            [experiment.experiment_id], search, order_by=["attributes.start_time ASC"], max_results=1
        )
        return runs[0].info.run_id if runs else None

    run_id = logged()
    if run_id is None:
        from tuneops.core.locks import store_lock
        from tuneops.core.store import ArtifactStore

        owner = f"log base {fingerprint[:12]} on {socket.gethostname()} pid {os.getpid()}"
        # One upload per base however many registrations start at once; a long upload renews its lease.
        with store_lock(
            ArtifactStore.from_settings(settings),
            f"registry-base-{fingerprint[:16]}",
            owner=owner,
            ttl_seconds=REGISTER_LEASE_SECONDS,
            wait_seconds=REGISTER_WAIT_SECONDS,
            heartbeat_seconds=REGISTER_LEASE_SECONDS / 4,
        ):
            run_id = logged() or _upload_base(client, experiment.experiment_id, reference, base_path)
    return {**reference, "mlflow_uri": f"runs:/{run_id}/base"}


def _upload_base(client, experiment_id: str, reference: dict, base_path: str) -> str:
    """A new run holding the base's files; tagged logged only once the upload completed (a failed one
    is marked FAILED and never referenced)."""
    fingerprint = reference["fingerprint"]
    run_id = client.create_run(
        experiment_id,
        tags={BASE_TAG: fingerprint, "tuneops.base_model": reference["ref"]},
        run_name=f"base-{fingerprint[:12]}",
    ).info.run_id
    try:
        client.log_artifacts(run_id, base_path, "base")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_tag(run_id, BASE_LOGGED_TAG, "true")
    client.set_terminated(run_id)
    log.info("logged base model %s (%s) to MLflow run %s", reference["ref"], fingerprint[:12], run_id)
    return run_id


def _base_artifact_location(settings: Settings) -> str | None:
    location = settings.mlflow_artifact_location
    return f"{location.rstrip('/')}/{BASE_EXPERIMENT}" if location else None


def fetch_logged_base(reference: dict, cache_dir: Path) -> str:
    """A verified local copy of a registered adapter's base model, for any MLflow client.

    From the MLflow artifact the registration logged (``mlflow_uri``), downloaded once into
    ``cache_dir/bases/<fingerprint>``; a version without one reads the base where the reference says
    (``tuneops.models.base_model.fetch_base``). Raises BaseModelError when the files are not the ones
    the adapter was trained on.
    """
    import mlflow

    from tuneops.models.base_model import fetch_base, verify_base

    if not reference.get("mlflow_uri"):
        return fetch_base(reference, cache_dir)
    dest = Path(cache_dir) / "bases" / reference["fingerprint"][:24]
    if dest.is_dir():
        try:
            verify_base(dest, reference)
            return str(dest)
        except ValueError:
            log.warning("cached base model %s no longer matches its fingerprint; fetching it again", dest)
            shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}")
    try:
        folder = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=reference["mlflow_uri"], dst_path=str(staging))
        )
        verify_base(folder, reference)
        try:
            folder.rename(dest)
        except OSError:  # another process put the same verified files there first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(dest)


def merge_adapter(base_path: str, adapter_dir: Path, out_dir: Path) -> Path:
    """Merge a LoRA adapter into its base weights and save model + tokenizer (safetensors)."""
    from tuneops.models.generation import load_model

    model, tokenizer = load_model(base_path, adapter_dir, device="cpu")
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
    tags: dict[str, str] | None = None,
    base: dict | None = None,
) -> str:
    """Log ``model_dir`` as a pyfunc in the active MLflow run and register it as ``name``.

    ``model_dir`` is a LoRA adapter with its tokenizer when ``base`` (``{"ref", "fingerprint", "uri"}``,
    see ``tuneops.models.base_model.base_reference``) names the model it was trained on, else whole
    weights with their tokenizer. The version is created in one registry call that gives it
    ``model_card`` as its description and ``tags`` plus the hashes of ``model_dir``
    (``tuneops.weights_sha256``) and of its serving config, base reference included
    (``tuneops.model_config_sha256``), so it never exists without them. Returns the new version
    number. The card is also logged as ``model_card.md``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from tuneops.core.hashing import hash_dir, hash_json

    weights = hash_dir(model_dir)
    config = {
        "template": json.dumps(template.model_dump()) if template is not None else "",
        "max_new_tokens": max_new_tokens,
        "decoding": json.dumps(decoding.model_dump()),
        "weights_sha256": weights,
        **({"base": json.dumps(base, sort_keys=True)} if base else {}),
    }
    packages = (*RUNTIME_PACKAGES, "peft", "boto3") if base else RUNTIME_PACKAGES
    with tempfile.TemporaryDirectory() as tmp:
        card = Path(tmp) / "model_card.md"
        card.write_text(model_card)
        mlflow.log_artifact(str(card))
        if model_dir.name != "model":  # MLflow names an artifact folder after its source folder
            model_dir = Path(shutil.copytree(model_dir, Path(tmp) / "model"))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"model": str(model_dir), "model_card": str(card)},
            code_paths=[str(Path(__file__).parents[1])],  # the whole tuneops package
            model_config=config,
            pip_requirements=[f"{p}=={pkg_version(p)}" for p in packages],
        )
    client = mlflow.MlflowClient()
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # Not retried here: a create whose answer was lost may have happened; the caller re-checks.
    version = client.create_model_version(
        name,
        source=info.model_uri,
        run_id=mlflow.active_run().info.run_id,
        tags={
            **{k: str(v) for k, v in (tags or {}).items()},
            WEIGHTS_TAG: weights,
            CONFIG_TAG: hash_json(config),
            **({BASE_TAG: base["fingerprint"]} if base else {}),
        },
        description=model_card,
        model_id=info.model_id,
    )
    return str(version.version)


def register_candidate(
    *,
    name: str,
    base: dict,
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
    """Register the candidate (its adapter and ``base``, the reference to its base model; see
    ``log_text_generator``) as a new version of ``name``, or find the one already registered.

    Returns ``{"name", "version", "reused"}``: exactly one version per ``fingerprint``, however
    many registrations of it run at once or are retried. A lease lock in the artifact store
    (``locks/registry-register-<name>-<fingerprint[:16]>``) covers check, upload and
    create; the version is born complete, with lineage ``tags``, the fingerprint, the weights
    hash and ``model_card`` (as its description and as ``model_card.md`` among the model's
    artifacts). A half-made version an earlier attempt of ``run_id`` left behind is deleted.
    The version also loads with ``mlflow.pyfunc.load_model`` in a fresh process.
    """
    import mlflow

    from tuneops.core.locks import store_lock
    from tuneops.core.store import ArtifactStore

    client = registry_client(settings)
    store = ArtifactStore.from_settings(settings)
    lock = f"registry-register-{name}-{fingerprint[:16]}"
    owner = f"register {name} {fingerprint[:12]} for run {run_id} on {socket.gethostname()} pid {os.getpid()}"
    # A short lease, renewed while the merge and upload run: a dead registrant's lapses in minutes.
    with store_lock(
        store,
        lock,
        owner=owner,
        ttl_seconds=REGISTER_LEASE_SECONDS,
        wait_seconds=REGISTER_WAIT_SECONDS,
        heartbeat_seconds=REGISTER_LEASE_SECONDS / 4,
    ):
        _delete_incomplete(client, name, run_id)
        existing = find_by_fingerprint(name, fingerprint, settings)
        if existing is not None:
            log.info("candidate %s is already registered as %s v%s", fingerprint[:12], name, existing.version)
            return {"name": name, "version": str(existing.version), "reused": True}
        with mlflow.start_run(run_id=run_id):
            log_text_generator(
                name,
                adapter_dir,
                template=template,
                max_new_tokens=max_new_tokens,
                decoding=decoding,
                model_card=model_card,
                tags={**tags, FINGERPRINT_TAG: fingerprint},
                base=base,
            )
        version = _keep_first(client, name, fingerprint, run_id)
    log.info("registered %s v%s from run %s", name, version, run_id)
    return {"name": name, "version": version, "reused": False}


def _delete_incomplete(client, name: str, run_id: str) -> None:
    """Delete versions of ``name`` from ``run_id`` that an earlier registration left without a fingerprint.

    Such a version was created but never finished (an older tuneops tagged versions one call at a
    time, and a registry that died in between left them bare); its upload cannot be trusted, and
    a fresh registration is cheaper than checking it. A version holding an alias, or carrying tags
    that tuneops did not write, is someone's deliberate work and is left alone.
    """
    for found in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        mv = client.get_model_version(name, found.version)
        if FINGERPRINT_TAG in mv.tags or mv.aliases or any(not k.startswith("tuneops.") for k in mv.tags):
            continue
        log.warning("deleting %s v%s: run %s's registration left it incomplete", name, mv.version, run_id)
        retry(lambda v=mv.version: client.delete_model_version(name, v))


def _keep_first(client, name: str, fingerprint: str, run_id: str) -> str:
    """The first version with ``fingerprint``, after deleting later copies this run just created.

    MLflow's HTTP client re-sends a request whose answer was lost, creates included, so one
    registration can leave two identical versions; the lock guarantees nobody else made them.
    """
    found = sorted(
        client.search_model_versions(f"name = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'"),
        key=lambda v: int(v.version),
    )
    for extra in found[1:]:
        mv = client.get_model_version(name, extra.version)
        if mv.run_id == run_id and not mv.aliases:
            log.warning("deleting %s v%s: a repeated create of v%s", name, mv.version, found[0].version)
            retry(lambda v=mv.version: client.delete_model_version(name, v))
    return str(found[0].version)


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
    from tuneops.core.locks import store_lock
    from tuneops.core.store import ArtifactStore

    with store_lock(ArtifactStore.from_settings(settings), f"registry-{name}", owner=owner):
        yield


def set_challenger(name: str, version: str, settings: Settings) -> None:
    client = registry_client(settings)
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
    client = registry_client(settings)
    _version(client, name, version)
    with promotion_lock(name, owner or f"promote {name} v{version} by {approved_by}", settings):
        challenger = alias_version(name, CHALLENGER, settings)
        if challenger is not None and str(challenger.version) == str(version):
            retry(
                lambda: client.delete_registered_model_alias(name, CHALLENGER)
            )  # it is (or becomes) the champion
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
        set_version_tags(
            client,
            name,
            version,
            {
                "tuneops.approved_by": approved_by,
                "tuneops.approved_at": _now(),
                "tuneops.approval_reason": reason,
                "tuneops.promoted_over": previous,
            },
        )
    log.info("%s champion -> v%s (was %s), approved by %s", name, version, previous or None, approved_by)
    return {"name": name, "version": str(version), "previous": previous or None, "changed": True}


def reject(name: str, version: str, rejected_by: str, reason: str, settings: Settings) -> dict:
    """Record a reviewer's rejection on the version and take ``challenger`` off it."""
    client = registry_client(settings)
    _version(client, name, version)
    set_version_tags(
        client,
        name,
        version,
        {
            "tuneops.rejected_by": rejected_by,
            "tuneops.rejected_at": _now(),
            "tuneops.rejection_reason": reason or "(no reason given)",
        },
    )
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
    client = registry_client(settings)
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
        set_version_tags(
            client,
            name,
            current.version,
            {
                "tuneops.rolled_back_by": requested_by,
                "tuneops.rolled_back_at": now,
                "tuneops.rollback_reason": reason,
                "tuneops.rolled_back_to": str(target.version),
            },
        )
        set_version_tags(
            client,
            name,
            target.version,
            {
                "tuneops.restored_by": requested_by,
                "tuneops.restored_at": now,
                "tuneops.restore_reason": reason,
            },
        )
    log.info(
        "%s champion rolled back v%s -> v%s by %s: %s",
        name,
        current.version,
        target.version,
        requested_by,
        reason,
    )
    return {"name": name, "version": str(target.version), "previous": str(current.version)}


def set_version_tags(client, name: str, version, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        retry(lambda k=key, v=value: client.set_model_version_tag(name, str(version), k, str(v)))
