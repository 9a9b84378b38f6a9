"""Turn validated batches into a versioned prompt dataset (HF ``datasets``).

Rows are rendered through a versioned template in a sandboxed Jinja2 environment, split
deterministically by hashing each record's id (new batches never move old rows between
splits), and saved under ``datasets/<name>/<version>``, where the version is a hash of the
input batches, the template, the config and the library version. Same inputs, same version,
and a rerun returns the existing one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import unicodedata
from pathlib import Path

from tuneops import __version__
from tuneops.config import DatasetConfig, PromptTemplate
from tuneops.hashing import hash_json
from tuneops.store import ArtifactStore

log = logging.getLogger(__name__)


class TemplateError(ValueError):
    """A template is malformed or references a field the data does not provide."""


def _env():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


def template_hash(template: PromptTemplate) -> str:
    return hash_json(template.model_dump())[:16]


def check_template(template: PromptTemplate, fields: set[str]) -> None:
    """Raise TemplateError if the template uses a variable not in ``fields`` (before any row is rendered)."""
    from jinja2 import TemplateSyntaxError, meta

    env = _env()
    provided = fields | {"system", "instruction"}
    for part in ("prompt", "response"):
        try:
            used = meta.find_undeclared_variables(env.parse(getattr(template, part)))
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template '{template.id}' {part}: syntax error at line {exc.lineno}: {exc.message}") from None
        unknown = sorted(used - provided)
        if unknown:
            raise TemplateError(
                f"template '{template.id}' {part} uses field(s) {unknown} that the data does not provide; "
                f"available fields: {sorted(provided)}. Add them to the dataset config's 'columns'/'keep' or fix the template."
            )


def _context(template: PromptTemplate, record: dict) -> dict:
    return {**record, "system": template.system, "instruction": record.get("instruction") or template.instruction}


def render_rows(records: list[dict], template: PromptTemplate) -> list[dict]:
    """Render each canonical record into ``{"id", "prompt", "response"}``."""
    env = _env()
    prompt_t, response_t = env.from_string(template.prompt), env.from_string(template.response)
    return [
        {"id": rec["id"], "prompt": prompt_t.render(_context(template, rec)), "response": response_t.render(_context(template, rec))}
        for rec in records
    ]


def render_prompt(template: PromptTemplate, record: dict) -> str:
    """The prompt part alone for one record (what a served model receives)."""
    return _env().from_string(template.prompt).render(_context(template, record))


# Bump when cleaning changes what a row becomes: it is part of every dataset version.
CLEANING_VERSION = 1
_SPACES = re.compile(r"[ \t\u00a0]+")


def normalise_text(text):
    """NFKC Unicode, runs of spaces and tabs to one space, trimmed lines; non-text passes through."""
    if not isinstance(text, str):
        return text
    text = unicodedata.normalize("NFKC", text)
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.strip().splitlines())


def clean_records(records: list[dict], text_fields: list[str]) -> tuple[list[dict], dict]:
    """Normalise and PII-redact ``text_fields``, then drop exact duplicates of (input, response).

    Deduplicating on content before splitting also keeps any example that appears in
    validation or test out of train. Returns the kept records and counts of what was done.
    """
    from tuneops.pii import redact

    redacted: dict[str, int] = {}
    seen: set[tuple] = set()
    kept, duplicates = [], 0
    for record in records:
        row = dict(record)
        for field in text_fields:
            row[field], hits = redact(normalise_text(row.get(field)))
            for kind, n in hits.items():
                redacted[kind] = redacted.get(kind, 0) + n
        key = (row["input"], row["response"])
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        kept.append(row)
    return kept, {"dropped": {"duplicate_content": duplicates}, "pii_redacted": redacted}


def assign_split(record_id: str, validation: float, test: float) -> str:
    """Stable split from a hash of the record id: adding batches never moves existing rows."""
    bucket = int(hashlib.sha256(record_id.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    if bucket < test:
        return "test"
    if bucket < test + validation:
        return "validation"
    return "train"


def build_prompt_dataset(
    validated_keys: list[str], config: DatasetConfig, template: PromptTemplate, store: ArtifactStore
) -> dict:
    """Build and publish the prompt dataset from validated batch keys.

    Returns ``{"uri", "key", "version", "counts", "template_id", "template_hash", "reused"}``.
    Raises TemplateError before processing rows when the template does not fit the data.
    """
    import pandas as pd

    if not validated_keys:
        raise ValueError("no validated batches given: run llmops_validate_data first or pass validated_uri")
    optional = {name for name in ("instruction", "label") if getattr(config.columns, name)}
    fields = {"id", "input", "response", *config.keep} | optional
    check_template(template, fields)
    batch_hashes = sorted(json.loads((store.fetch_dir(k) / "meta.json").read_text())["batch_hash"] for k in validated_keys)
    t_hash = template_hash(template)
    version = hash_json(
        {
            "batches": batch_hashes,
            "template": t_hash,
            "splits": config.splits.model_dump(),
            "cleaning": CLEANING_VERSION,
            "lib": __version__,
        }
    )[:16]
    key = f"datasets/{config.name}/{version}"
    if store.exists(key):
        manifest = json.loads((store.fetch_dir(key) / "manifest.json").read_text())
        log.info("prompt dataset %s exists at %s; reusing it", version, store.uri(key))
        return {**_summary(manifest), "uri": store.uri(key), "key": key, "reused": True}

    frame = pd.concat([pd.read_parquet(store.fetch_dir(k) / "data.parquet") for k in validated_keys], ignore_index=True)
    before = len(frame)
    frame = frame.drop_duplicates(subset="id", keep="first").sort_values("id", kind="stable")
    text_fields = ["input", "response", *config.keep] + (["instruction"] if config.columns.instruction else [])
    records, cleaning = clean_records(frame.to_dict("records"), text_fields)
    rows = render_rows(records, template)
    splits: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for row in rows:
        splits[assign_split(row["id"], config.splits.validation, config.splits.test)].append(row)
    if not splits["train"] or not splits["test"]:
        raise ValueError(f"dataset {config.name} has {len(rows)} rows: too few for a train and a test split")
    manifest = {
        "dataset": config.name,
        "version": version,
        "counts": {name: len(part) for name, part in splits.items()},
        "dropped": {"duplicate_id": before - len(frame), **cleaning["dropped"]},
        "pii_redacted": cleaning["pii_redacted"],
        "source_batches": batch_hashes,
        "template_id": template.id,
        "template_hash": t_hash,
        "template": template.model_dump(),
        "library_version": __version__,
    }
    with tempfile.TemporaryDirectory() as tmp:
        _save_dataset_dict(splits, Path(tmp) / "data")
        (Path(tmp) / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        uri = store.publish_dir(Path(tmp), key)
    log.info("prompt dataset %s: %s -> %s", version, manifest["counts"], uri)
    return {**_summary(manifest), "uri": uri, "key": key, "reused": False}


def _save_dataset_dict(splits: dict[str, list[dict]], path: Path) -> None:
    from datasets import Dataset, DatasetDict, Features, Value

    features = Features({"id": Value("string"), "prompt": Value("string"), "response": Value("string")})
    DatasetDict({name: Dataset.from_list(rows, features=features) for name, rows in splits.items()}).save_to_disk(str(path))


def _summary(manifest: dict) -> dict:
    return {k: manifest[k] for k in ("dataset", "version", "counts", "template_id", "template_hash")}


def load_prompt_dataset(dataset_dir: Path):
    """Load a published prompt dataset folder as a ``DatasetDict``."""
    from datasets import load_from_disk

    return load_from_disk(str(Path(dataset_dir) / "data"))
