"""Validate a raw batch against its dataset contract with Great Expectations and publish it.

The raw batch (JSONL, CSV or Parquet; a file or a folder; local or ``s3://``) is mapped to
the canonical columns, checked with an expectation suite built from the dataset config,
and published to ``validated/<dataset>/<batch hash>`` only when every expectation passes.
A failing batch raises ``BatchRejected`` naming each failed expectation; its report goes to
``rejected/<dataset>/<batch hash>`` and nothing is published under ``validated/``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from tuneops import __version__
from tuneops.config import DatasetConfig
from tuneops.hashing import hash_file, hash_json
from tuneops.store import ArtifactStore, fetch_file, list_files

log = logging.getLogger(__name__)

READERS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


class BatchRejected(ValueError):
    """The batch broke its data contract; the message lists every failed expectation."""


def read_raw_batch(batch_uri: str, config: DatasetConfig, cache_dir: Path):
    """Read every file of a batch into one DataFrame; returns ``(frame, per-file hashes)``."""
    import pandas as pd

    files = list_files(batch_uri)
    if not files:
        raise BatchRejected(f"batch {batch_uri} holds no files; write JSONL, CSV or Parquet files there")
    frames, hashes = [], {}
    for uri in files:
        fmt = config.format if config.format != "auto" else READERS.get(Path(uri).suffix.lower())
        if fmt is None:
            raise BatchRejected(
                f"cannot tell the format of {uri}: use a .jsonl, .csv or .parquet file, or set 'format' in the dataset config"
            )
        local = fetch_file(uri, cache_dir)
        hashes[uri] = hash_file(local)
        try:
            if fmt == "jsonl":
                frames.append(pd.read_json(local, lines=True, dtype=False))
            elif fmt == "csv":
                frames.append(pd.read_csv(local, dtype=str, keep_default_na=False))
            else:
                frames.append(pd.read_parquet(local))
        except ValueError as exc:
            raise BatchRejected(f"{uri} is not valid {fmt}: {exc}") from exc
    return pd.concat(frames, ignore_index=True), hashes


def to_canonical(frame, config: DatasetConfig):
    """Rename mapped raw columns to canonical ones; a mapped column the data lacks is an error."""
    import pandas as pd

    mapping = {canon: raw for canon, raw in config.columns.model_dump().items() if raw is not None}
    wanted = list(mapping.values()) + list(config.keep)
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise BatchRejected(
            f"dataset config '{config.name}' maps column(s) {missing} that the batch does not have; "
            f"the batch has columns {sorted(map(str, frame.columns))}. Fix 'columns'/'keep' in the dataset config."
        )
    out = frame[list(mapping.values())].rename(columns={raw: canon for canon, raw in mapping.items()})
    for col in config.keep:
        out[col] = frame[col]
    for col in ("id", "input", "response"):
        out[col] = out[col].map(lambda v: v if isinstance(v, str) else (None if pd.isna(v) else str(v)))
    return out


def build_expectations(config: DatasetConfig) -> list:
    """The expectation suite for a dataset config: (expectation, critical?) pairs."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations.expectations as gxe

    rules = config.validation
    exps = [gxe.ExpectTableRowCountToBeBetween(min_value=rules.min_rows)]
    for col in ("id", "input", "response"):
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col))
    exps += [
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValueLengthsToBeBetween(column="input", min_value=rules.input_chars[0], max_value=rules.input_chars[1]),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="response", min_value=rules.response_chars[0], max_value=rules.response_chars[1]
        ),
        gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(column="input", min_value=1 - rules.max_duplicate_rate),
    ]
    if rules.response_is_json:
        exps.append(gxe.ExpectColumnValuesToBeJsonParseable(column="response"))
    return exps


def run_expectations(frame, config: DatasetConfig) -> dict:
    """Run the suite through a GE Checkpoint; returns the validation result as JSON-able dict."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    asset = context.data_sources.add_pandas("tuneops").add_dataframe_asset(config.name)
    batch_def = asset.add_batch_definition_whole_dataframe("batch")
    suite = context.suites.add(gx.ExpectationSuite(name=f"{config.name}_contract"))
    for exp in build_expectations(config):
        suite.add_expectation(exp)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="contract", data=batch_def, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(name="contract", validation_definitions=[definition]))
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    (validation,) = result.run_results.values()
    return validation.to_json_dict()


def failed_expectations(result: dict) -> list[str]:
    """Readable lines for each failed expectation in a GE validation result dict."""
    lines = []
    for r in result["results"]:
        if r["success"]:
            continue
        cfg = r["expectation_config"]
        kwargs = {k: v for k, v in cfg["kwargs"].items() if k not in ("batch_id",)}
        res = r.get("result", {})
        seen = {k: res[k] for k in ("observed_value", "unexpected_count", "unexpected_percent") if k in res}
        examples = res.get("partial_unexpected_list", [])[:3]
        lines.append(f"{cfg['type']}({json.dumps(kwargs, default=str)}) failed: {seen}" + (f" e.g. {examples}" if examples else ""))
        if r.get("exception_info", {}).get("raised_exception"):
            lines[-1] += f" [{r['exception_info']['exception_message']}]"
    return lines


def eda_summary(frame) -> dict:
    """Small EDA figures stored with the batch and shown in the task log."""
    lengths = frame["input"].str.len()
    return {
        "rows": int(len(frame)),
        "input_chars": {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 1), "max": int(lengths.max())},
        "response_chars_mean": round(float(frame["response"].str.len().mean()), 1),
        "distinct_responses": int(frame["response"].nunique()),
    }


def validate_batch(batch_uri: str, config: DatasetConfig, store: ArtifactStore, cache_dir: Path) -> dict:
    """Validate a raw batch and publish it; returns ``{"uri", "key", "batch_hash", "rows", "reused"}``.

    Raises BatchRejected naming every failed expectation (nothing is published under validated/).
    """
    frame, file_hashes = read_raw_batch(batch_uri, config, cache_dir)
    batch_hash = hash_json({"files": sorted(file_hashes.values()), "config": config.model_dump(), "v": __version__})[:16]
    key = f"validated/{config.name}/{batch_hash}"
    if store.exists(key):
        meta = json.loads((store.fetch_dir(key) / "meta.json").read_text())
        log.info("batch %s already validated at %s; reusing it", batch_uri, store.uri(key))
        return {**meta, "uri": store.uri(key), "key": key, "reused": True}

    canonical = to_canonical(frame, config)
    result = run_expectations(canonical, config)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "validation.json").write_text(json.dumps(result, indent=2, default=str))
        if not result["success"]:
            problems = failed_expectations(result)
            (out / "summary.md").write_text("# Rejected batch\n\n" + "\n".join(f"- {p}" for p in problems) + "\n")
            rejected = store.publish_dir(out, f"rejected/{config.name}/{batch_hash}")
            raise BatchRejected(
                f"batch {batch_uri} failed {len(problems)} expectation(s) of dataset '{config.name}' "
                f"(report: {rejected}):\n  - " + "\n  - ".join(problems)
            )
        eda = eda_summary(canonical)
        meta = {"dataset": config.name, "batch_hash": batch_hash, "source": batch_uri, "files": file_hashes, **eda}
        canonical.to_parquet(out / "data.parquet", index=False)
        (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        (out / "summary.md").write_text(
            f"# Validated batch {batch_hash}\n\nsource: {batch_uri}\n\n```json\n{json.dumps(eda, indent=2)}\n```\n"
        )
        uri = store.publish_dir(out, key)
    log.info("validated %d rows from %s -> %s", eda["rows"], batch_uri, uri)
    return {**meta, "uri": uri, "key": key, "reused": False}
