"""Turn validated batches into a versioned prompt dataset (HF ``datasets``).

Records are cleaned (Unicode/whitespace normalisation, typed PII redaction, end-of-text
markers stripped from responses), rendered through a versioned template in a sandboxed
Jinja2 environment (or the tokenizer's own chat template), measured in tokens with the
dataset's tokenizer, deduplicated exactly (on the rendered prompt and response) and by
MinHash near-duplicates (on the configured fields), split by a hash of the record id (new batches never move old rows
between splits), checked so no validation/test/golden example, exact or near, is also in
train, and saved under ``datasets/<name>/<version>``. The version hashes the input batches,
the golden file, the template, the config and the library version: same inputs, same
version, and a rerun returns the existing one. Every dropped row is counted by reason.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import tempfile
import unicodedata
from pathlib import Path

from tuneops import __version__
from tuneops.config import DatasetConfig
from tuneops.contracts import MANIFEST_FILE, DatasetManifest
from tuneops.core.hashing import hash_file, hash_json
from tuneops.core.lineage import FEEDBACK_ID_PREFIX
from tuneops.core.store import ArtifactStore
from tuneops.core.templates import (
    PromptTemplate,
    adds_special_tokens,
    check_template,
    render_example,
    template_hash,
)

log = logging.getLogger(__name__)

# Bump when cleaning changes what a row becomes: it is part of every dataset version.
CLEANING_VERSION = 3
SPLITS = ("train", "validation", "test", "golden")
# Drop reasons, in the order they are applied; the manifest lists each, zeros included.
DROP_REASONS = (
    "duplicate_id",
    "too_few_tokens",
    "too_many_tokens",
    "duplicate_exact",
    "near_duplicate",
    "contamination",
)
_SPACES = re.compile(r"[ \t\u00a0]+")
ROWS_PER_PROCESS = 25_000


def encode_example(
    tokenizer, prompt: str, response: str, add_special_tokens: bool = True
) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the response, the response ending in exactly one EOS."""
    prompt_ids = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if not response_ids or response_ids[-1] != tokenizer.eos_token_id:
        response_ids = [*response_ids, tokenizer.eos_token_id]
    return prompt_ids, response_ids


# --- cleaning -------------------------------------------------------------------------


def normalise_text(text):
    """NFKC Unicode, runs of spaces and tabs to one space, trimmed lines; non-text passes through."""
    if not isinstance(text, str):
        return text
    text = unicodedata.normalize("NFKC", text)
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.strip().splitlines())


def strip_end_markers(text: str, markers: list[str]) -> tuple[str, list[str]]:
    """``text`` without the end-of-text markers (and whitespace) that end it, and the markers removed.

    Markers are removed from the end again and again (``"done</s> <|endoftext|>"`` loses
    both); a marker anywhere else in the text stays.
    """
    removed = []
    text = text.rstrip()
    longest_first = sorted(markers, key=len, reverse=True)
    while marker := next((m for m in longest_first if text.endswith(m)), None):
        removed.append(marker)
        text = text[: -len(marker)].rstrip()
    return text, removed


def assign_split(record_id: str, validation: float, test: float) -> str:
    """Stable split from a hash of the record id: adding batches never moves existing rows."""
    bucket = int(hashlib.sha256(record_id.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    if bucket < test:
        return "test"
    if bucket < test + validation:
        return "validation"
    return "train"


@functools.lru_cache(maxsize=2)
def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _prepare(
    batch: dict,
    *,
    template_json: str,
    text_fields: list,
    pii_kinds: list,
    end_markers: list,
    dedup_fields: list,
    tokenizer_path: str | None,
    num_perm: int | None,
) -> dict:
    """``datasets.map`` body: clean, render, count tokens and sign one batch of rows."""
    from tuneops.core.pii import redact

    template = PromptTemplate.model_validate_json(template_json)
    tokenizer = _load_tokenizer(tokenizer_path) if tokenizer_path else None
    n = len(batch["id"])
    pii = {kind: [0] * n for kind in pii_kinds}
    for field in text_fields:
        cleaned = []
        for i, value in enumerate(batch[field]):
            value, hits = redact(normalise_text(value), pii_kinds)
            for kind, count in hits.items():
                pii[kind][i] += count
            cleaned.append(value)
        batch[field] = cleaned
    # The trainer appends the model's own EOS; a marker left in would be trained on as text.
    markers = {j: [0] * n for j in range(len(end_markers))}
    responses = []
    for i, value in enumerate(batch["response"]):
        if isinstance(value, str):
            value, removed = strip_end_markers(value, end_markers)
            for marker in removed:
                markers[end_markers.index(marker)][i] += 1
        responses.append(value)
    batch["response"] = responses
    records = [{key: batch[key][i] for key in batch} for i in range(n)]
    rendered = [render_example(template, rec, tokenizer) for rec in records]
    out = {
        "prompt": [p for p, _ in rendered],
        "response": [r for _, r in rendered],
        **{f"_pii_{kind}": counts for kind, counts in pii.items()},
        **{f"_marker_{j}": counts for j, counts in markers.items()},
    }
    # Exact copies are decided on everything the model sees: two rows are the same example
    # only when their prompts and responses are, whatever fields they differ in.
    out["_exact"] = [hashlib.sha1(f"{p}\x00{r}".encode()).hexdigest() for p, r in rendered]
    if tokenizer is not None:
        prompt_ids = tokenizer(out["prompt"], add_special_tokens=adds_special_tokens(template))["input_ids"]
        response_ids = tokenizer(out["response"], add_special_tokens=False)["input_ids"]
        eos = tokenizer.eos_token_id
        out["_prompt_tokens"] = [len(ids) for ids in prompt_ids]
        out["_response_tokens"] = [len(ids) + (0 if ids and ids[-1] == eos else 1) for ids in response_ids]
    if num_perm:
        from tuneops.data.dedup import signatures

        near_text = ["\n".join(str(rec.get(f) or "") for f in dedup_fields) for rec in records]
        out["_signature"] = signatures(near_text, num_perm).tolist()
        out["_has_near_text"] = [bool(t.strip()) for t in near_text]
    return out


def _resolve_duplicates(frame, sigs, threshold: float | None):
    """Drop reason per row (None to keep) for exact and near duplicates, given rows in priority order.

    Each cluster keeps its earliest row: golden rows first, then batches oldest first, so
    a new batch never displaces a row that an earlier dataset version already held. A
    dropped train row whose kept twin is in validation, test or golden is contamination.
    Rows without near-duplicate text (``_has_near_text`` false) join no near-duplicate
    cluster: empty fields would make them all look alike.
    """
    import numpy as np
    import pandas as pd

    from tuneops.data.dedup import near_duplicate_clusters

    n = len(frame)
    codes = pd.factorize(frame["_exact"])[0]
    first_of = np.unique(codes, return_index=True)[1][codes]  # earliest row with the same text
    rep = first_of
    if threshold is not None and n:
        heads = np.flatnonzero((first_of == np.arange(n)) & frame["_has_near_text"].to_numpy(dtype=bool))
        head_rep = np.arange(n)
        head_rep[heads] = heads[near_duplicate_clusters(sigs[heads], threshold)]
        rep = head_rep[first_of]
    split = frame["_split"].to_numpy()
    reasons: list[str | None] = []
    for i in range(n):
        r = int(rep[i])
        if r == i or split[i] == "golden":
            reasons.append(None)
        elif split[i] == "train" and split[r] != "train":
            reasons.append("contamination")
        elif first_of[i] == first_of[r]:
            reasons.append("duplicate_exact")
        else:
            reasons.append("near_duplicate")
    return reasons


def _token_stats(lengths) -> dict:
    import numpy as np

    if not len(lengths):
        return {"rows": 0}
    arr = np.asarray(lengths)
    return {
        "rows": int(len(arr)),
        "min": int(arr.min()),
        "mean": round(float(arr.mean()), 1),
        "p50": int(np.percentile(arr, 50)),
        "p95": int(np.percentile(arr, 95)),
        "max": int(arr.max()),
        "total": int(arr.sum()),
    }


# --- building -------------------------------------------------------------------------


def read_golden(config: DatasetConfig, cache_dir: Path):
    """The pinned golden file as canonical records, and its content hash; (None, None) without one."""
    from tuneops.core.store import fetch_file
    from tuneops.data.validation import BatchRejected, read_raw_batch, to_canonical

    if not config.golden:
        return None, None
    try:
        local = fetch_file(config.golden, cache_dir)
        frame, columns_seen = read_raw_batch({config.golden: local}, config)
        return to_canonical(frame, config, columns_seen), hash_file(local)
    except (BatchRejected, FileNotFoundError) as exc:
        raise ValueError(
            f"golden set {config.golden} of dataset '{config.name}' cannot be read: {exc}"
        ) from None


def select_batches(given_keys: list[str], config: DatasetConfig, store: ArtifactStore) -> list[str]:
    """The validated batches one dataset accumulates, per ``config.accumulate``; ``given_keys`` always included.

    Candidates are the dataset's accepted batches validated no later than the newest given
    one (a rerun of an older run gives the same dataset). ``mode: window`` keeps those
    validated within ``window_days`` before it.
    """
    from datetime import UTC, datetime, timedelta

    def validated_at(key: str) -> datetime:
        stamp = json.loads((store.fetch_dir(key) / "meta.json").read_text()).get("validated_at")
        return datetime.fromisoformat(stamp) if stamp else datetime.min.replace(tzinfo=UTC)

    if not given_keys:
        return []
    newest = max(validated_at(k) for k in given_keys)
    oldest = datetime.min.replace(tzinfo=UTC)
    if config.accumulate.mode == "window":
        oldest = newest - timedelta(days=config.accumulate.window_days)
    chosen = [k for k in store.list_keys(f"validated/{config.name}") if oldest <= validated_at(k) <= newest]
    return list(dict.fromkeys([*chosen, *given_keys]))


def build_prompt_dataset(
    validated_keys: list[str],
    config: DatasetConfig,
    template: PromptTemplate,
    store: ArtifactStore,
    cache_dir: Path | None = None,
) -> dict:
    """Build and publish the prompt dataset from validated batch keys (any order).

    Returns ``{"uri", "key", "version", "counts", "dropped", "template_id", "template_hash", "reused"}``.
    Raises TemplateError before processing rows when the template does not fit the data,
    and ValueError when no batch is given or too few rows are left for train and test.
    """
    import numpy as np
    import pandas as pd

    from tuneops.models.base_model import resolve_tokenizer

    if not validated_keys:
        raise ValueError("no validated batches given: run llmops_validate_data first or pass validated_uri")
    cache_dir = cache_dir or Path(tempfile.gettempdir()) / "tuneops-cache"
    canonical = config.columns.canonical_fields()
    fields = canonical | set(config.keep)
    unknown = sorted(set(config.cleaning.near_duplicates.fields) - fields)
    if unknown:
        raise ValueError(
            f"cleaning.near_duplicates.fields {unknown} are not dataset fields; choose from {sorted(fields)}"
        )
    tokenizer_path = resolve_tokenizer(config.tokenizer, store) if config.tokenizer else None
    tokenizer = _load_tokenizer(tokenizer_path) if tokenizer_path else None
    check_template(template, fields, tokenizer)

    metas = sorted(
        (
            json.loads((store.fetch_dir(k) / "meta.json").read_text()) | {"_key": k}
            for k in dict.fromkeys(validated_keys)
        ),
        key=lambda m: (m.get("validated_at", ""), m["batch_hash"]),
    )
    golden, golden_hash = read_golden(config, cache_dir)
    t_hash = template_hash(template)
    version = hash_json(
        {
            "batches": [m["batch_hash"] for m in metas],
            "golden": golden_hash,
            "template": t_hash,
            "tokenizer": _tokenizer_identity(tokenizer_path),
            # The template's content is hashed above; where its file lies does not matter.
            "config": config.model_dump(exclude={"validation", "golden", "accumulate", "template"}),
            "cleaning": CLEANING_VERSION,
            "lib": __version__,
        }
    )[:16]
    key = f"datasets/{config.name}/{version}"
    if store.exists(key):
        manifest = DatasetManifest.load(store.fetch_dir(key)).model_dump()
        log.info("prompt dataset %s exists at %s; reusing it", version, store.uri(key))
        return {**_summary(manifest), "uri": store.uri(key), "key": key, "reused": True}

    # Priority order: golden first, then batches oldest first, ids sorted within a batch.
    parts = [golden.assign(_batch="golden")] if golden is not None else []
    for m in metas:
        part = pd.read_parquet(store.fetch_dir(m["_key"]) / "data.parquet")
        parts.append(part.sort_values("id", kind="stable").assign(_batch=m["batch_hash"]))
    frame = pd.concat(parts, ignore_index=True)
    text_fields = ["input", "response", *config.keep] + (
        ["instruction"] if "instruction" in canonical else []
    )
    frame = frame[[c for c in frame.columns if c in fields or c == "_batch"]]
    for col in text_fields:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), "")
    dropped = dict.fromkeys(DROP_REASONS, 0)
    before = len(frame)
    frame = frame.drop_duplicates(subset="id", keep="first").reset_index(drop=True)
    dropped["duplicate_id"] = before - len(frame)

    threshold = config.cleaning.near_duplicates.threshold
    prepared = _prepare_all(frame, template, text_fields, config, tokenizer_path, threshold)
    frame = pd.concat([frame[["id", "_batch"]], prepared], axis=1)
    frame["_split"] = [
        "golden" if b == "golden" else assign_split(i, config.splits.validation, config.splits.test)
        for i, b in zip(frame["id"], frame["_batch"], strict=True)
    ]
    if tokenizer is not None:
        frame["_tokens"] = frame["_prompt_tokens"] + frame["_response_tokens"]
        low, high = config.cleaning.token_bounds or (0, float("inf"))
        frame["_drop"] = np.where(
            frame["_tokens"] < low, "too_few_tokens", np.where(frame["_tokens"] > high, "too_many_tokens", "")
        )
        frame.loc[frame["_split"] == "golden", "_drop"] = ""
    else:
        frame["_drop"] = ""
    kept = frame[frame["_drop"] == ""].reset_index(drop=True)
    sigs = np.asarray(kept["_signature"].tolist(), dtype=np.uint32) if threshold is not None else None
    kept["_drop"] = [r or "" for r in _resolve_duplicates(kept, sigs, threshold)]
    for reason, n in pd.concat([frame["_drop"], kept["_drop"]]).value_counts().items():
        if reason:
            dropped[reason] += int(n)
    kept = kept[kept["_drop"] == ""]
    splits = {name: kept[kept["_split"] == name] for name in SPLITS if name != "golden" or golden is not None}
    if splits["train"].empty or splits["test"].empty:
        raise ValueError(
            f"dataset {config.name} has {len(kept)} rows after cleaning ({dropped} dropped): too few for a train and "
            "a test split; add batches, or loosen cleaning.token_bounds / cleaning.near_duplicates.threshold"
        )
    feedback_ids = sorted(
        i[len(FEEDBACK_ID_PREFIX) :] for i in kept["id"] if str(i).startswith(FEEDBACK_ID_PREFIX)
    )
    manifest = {
        "dataset": config.name,
        "version": version,
        "counts": {name: len(part) for name, part in splits.items()},
        "dropped": dropped,
        "pii_redacted": {k: int(frame[f"_pii_{k}"].sum()) for k in config.cleaning.redact_pii},
        "markers_stripped": {
            marker: int(frame[f"_marker_{j}"].sum()) for j, marker in enumerate(_end_markers(config))
        },
        "token_lengths": (
            {name: _token_stats(part["_tokens"]) for name, part in splits.items()}
            if tokenizer is not None
            else None
        ),
        "tokenizer": config.tokenizer,
        "source_batches": [
            {
                "batch_hash": m["batch_hash"],
                "validated_at": m.get("validated_at"),
                "rows": m.get("rows"),
                "uri": store.uri(m["_key"]),
            }
            for m in metas
        ],
        "golden": {"source": config.golden, "sha256": golden_hash, "rows": len(golden)}
        if golden is not None
        else None,
        "cleaning": config.cleaning.model_dump(),
        "splits": config.splits.model_dump(),
        # Which human corrections (``/feedback``) are in this version.
        "feedback": {"rows": len(feedback_ids), "feedback_ids": feedback_ids},
        "template_id": template.id,
        "template_hash": t_hash,
        "template_format": template.format,
        "add_special_tokens": adds_special_tokens(template),
        "template": template.model_dump(),
        "library_version": __version__,
        "cleaning_version": CLEANING_VERSION,
    }
    with tempfile.TemporaryDirectory() as tmp:
        _save_dataset_dict(splits, Path(tmp) / "data")
        DatasetManifest.model_validate(manifest)  # the contract every reader relies on
        (Path(tmp) / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        uri = store.publish_dir(Path(tmp), key)
    log.info("prompt dataset %s: %s, dropped %s -> %s", version, manifest["counts"], dropped, uri)
    return {**_summary(manifest), "uri": uri, "key": key, "reused": False}


def _tokenizer_identity(path: str | None) -> str | None:
    from tuneops.core.hashing import hash_dir

    if path is None:
        return None
    return hash_dir(Path(path)) if Path(path).is_dir() else path


def _prepare_all(
    frame, template: PromptTemplate, text_fields, config: DatasetConfig, tokenizer_path, threshold
):
    """Run ``_prepare`` over the frame with batched ``datasets.map``, in parallel once that pays."""
    from datasets import Dataset, disable_progress_bars

    from tuneops.data.dedup import NUM_PERM

    disable_progress_bars()
    columns = [c for c in frame.columns if c != "_batch"]
    ds = Dataset.from_pandas(frame[columns], preserve_index=False)
    workers = max(1, min(os.cpu_count() or 1, len(frame) // ROWS_PER_PROCESS))
    prepared = ds.map(
        _prepare,
        batched=True,
        batch_size=1000,
        num_proc=workers if workers > 1 else None,
        remove_columns=columns,
        fn_kwargs={
            "template_json": template.model_dump_json(),
            "text_fields": text_fields,
            "pii_kinds": list(config.cleaning.redact_pii),
            "end_markers": _end_markers(config),
            "dedup_fields": list(config.cleaning.near_duplicates.fields),
            "tokenizer_path": tokenizer_path,
            "num_perm": NUM_PERM if threshold is not None else None,
        },
        keep_in_memory=True,
        new_fingerprint=hash_json(
            {"rows": len(frame), "template": template.model_dump(), "config": config.model_dump()}
        )[:16],
    )
    return prepared.to_pandas()


def _end_markers(config: DatasetConfig) -> list[str]:
    """The configured end-of-text markers, each once, in their configured order."""
    return list(dict.fromkeys(config.cleaning.end_markers))


def _save_dataset_dict(splits: dict, path: Path) -> None:
    from datasets import Dataset, DatasetDict, Features, Value

    features = Features(
        {
            "id": Value("string"),
            "prompt": Value("string"),
            "response": Value("string"),
            "source_batch": Value("string"),
        }
    )
    DatasetDict(
        {
            name: Dataset.from_dict(
                {
                    "id": part["id"].tolist(),
                    "prompt": part["prompt"].tolist(),
                    "response": part["response"].tolist(),
                    "source_batch": part["_batch"].tolist(),
                },
                features=features,
            )
            for name, part in splits.items()
        }
    ).save_to_disk(str(path))


def _summary(manifest: dict) -> dict:
    return {
        k: manifest[k] for k in ("dataset", "version", "counts", "dropped", "template_id", "template_hash")
    }


def load_prompt_dataset(dataset_dir: Path):
    """Load a published prompt dataset folder as a ``DatasetDict``."""
    from datasets import load_from_disk

    return load_from_disk(str(Path(dataset_dir) / "data"))


def log_dataset_inputs(dataset_dir: Path, uri: str, contexts: dict[str, str]) -> None:
    """Log splits of a published prompt dataset as ``mlflow.data`` inputs of the active run.

    ``contexts`` maps split name to the MLflow input context (``"training"``, ...). Each
    input is named ``<dataset>@<version>/<split>``, has the dataset version as its digest and
    the dataset URI as its source, and is tagged with the template id and hash.
    """
    import mlflow
    from mlflow.data.sources import LocalArtifactDatasetSource, S3ArtifactDatasetSource

    manifest = DatasetManifest.load(dataset_dir)
    splits = load_prompt_dataset(dataset_dir)
    # An explicit source: MLflow registers the local one twice and warns when left to guess.
    source = S3ArtifactDatasetSource(uri) if uri.startswith("s3://") else LocalArtifactDatasetSource(uri)
    datasets, names, tags = [], [], []
    for split, context in contexts.items():
        if split not in splits:
            continue
        frame = splits[split].to_pandas()
        name = f"{manifest.dataset}@{manifest.version}/{split}"
        datasets.append(mlflow.data.from_pandas(frame, source=source, name=name, digest=manifest.version))
        names.append(context)
        tags.append(
            {
                "tuneops.template_id": manifest.template_id,
                "tuneops.template_hash": manifest.template_hash,
            }
        )
    mlflow.log_inputs(datasets=datasets, contexts=names, tags_list=tags)
