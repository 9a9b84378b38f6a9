"""Validate a raw batch against its dataset contract with Great Expectations and publish it.

A raw batch (JSONL, CSV or Parquet; a file or a folder; local or ``s3://``) is read with
strict parsers that name the file and line of any problem, mapped to the canonical columns
(optionally exploding a nested list into rows), and checked with an expectation suite built
from the dataset config. Each expectation is critical or warning-only. The batch is
published to ``validated/<dataset>/<batch hash>`` with its validation result, summary and
EDA report only when no critical expectation fails. Otherwise ``BatchRejected`` names every
failure, the batch's files move to ``quarantine/<dataset>/<batch hash>`` with the result,
and nothing is published under ``validated/``.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tuneops import __version__
from tuneops.config import DatasetConfig
from tuneops.core.excerpt import excerpt
from tuneops.core.hashing import hash_file, hash_json
from tuneops.core.landing import confine
from tuneops.core.pii import PII_PATTERNS
from tuneops.core.store import ArtifactNotFound, ArtifactStore, fetch_file, list_files, remove_file

log = logging.getLogger(__name__)

READERS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
TEXT_COLUMNS = ("id", "input", "response", "instruction", "label")
# Replacement characters, control characters other than tab/newline, and the usual
# UTF-8-read-as-latin-1 sequences (Ã©, â€™, Â ).
BAD_ENCODING = r"[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|Ã[\x80-\xbf]|â€|Â[\x80-\xbf ]"


class BatchRejected(ValueError):
    """The batch broke its data contract; the message says what, where, and what to do.

    ``report_key`` is the store key of the quarantined batch and its reports, when it was moved.
    """

    report_key: str | None = None


# --- reading --------------------------------------------------------------------------

# Leading bytes of compressed files someone may land instead of the text inside them.
COMPRESSED = {
    b"\x1f\x8b": ("gzip", "gunzip -c"),
    b"PK\x03\x04": ("zip", "unzip -p"),
    b"BZh": ("bzip2", "bunzip2 -c"),
    b"\xfd7zXZ\x00": ("xz", "unxz -c"),
}


def check_text_file(path: Path, uri: str) -> None:
    """Refuse a JSONL/CSV file that is compressed or UTF-16, naming what it is and how to fix it."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    for magic, (kind, tool) in COMPRESSED.items():
        if head.startswith(magic):
            raise BatchRejected(
                f"{uri} is {kind}-compressed: decompress it (`{tool} {Path(uri).name} > out`) or land the uncompressed file"
            )
    encoding = _utf16_encoding(head)
    if encoding:
        raise BatchRejected(
            f"{uri} is UTF-16 text, not UTF-8: re-encode it (`iconv -f {encoding} -t UTF-8 in > out`) and land the result"
        )


def _utf16_encoding(head: bytes) -> str | None:
    """The iconv name of the UTF-16 flavour ``head`` starts, or None: by BOM, else by NULs in every other byte."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "UTF-16"
    pairs = head[: len(head) // 2 * 2]
    if len(pairs) < 4:
        return None
    if not any(pairs[1::2]):
        return "UTF-16LE"
    if not any(pairs[0::2]):
        return "UTF-16BE"
    return None


def _utf8_error(uri: str, raw: bytes, exc: UnicodeDecodeError, line: int) -> BatchRejected:
    return BatchRejected(
        f"{uri} is not valid UTF-8: byte 0x{raw[exc.start]:02x} at line {line}; re-encode the file as UTF-8"
    )


def iter_jsonl(path: Path, uri: str):
    """Stream ``(line number, record)`` of a JSON Lines file; names the line of bad bytes, bad JSON or a non-object."""
    seen_content = False
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _utf8_error(uri, raw, exc, number) from None
            if not line.strip():
                continue
            seen_content = True
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BatchRejected(
                    f"{uri} line {number}: invalid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            if not isinstance(record, dict):
                raise BatchRejected(
                    f"{uri} line {number}: expected a JSON object per line, got {type(record).__name__}"
                )
            yield number, record
    if not seen_content:
        raise BatchRejected(f"{uri} is empty: write at least one record")


def iter_csv(path: Path, uri: str, columns_seen: set):
    """Stream ``(start line, record)`` of a CSV file with a header; names ragged rows and unclosed quotes by line."""
    records = 0
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        header = None
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except UnicodeDecodeError as exc:
                raise _utf8_error(uri, exc.object, exc, start) from None
            except csv.Error as exc:
                raise BatchRejected(
                    f"{uri}: malformed CSV in the record starting at line {start} ({exc}); check for an unclosed quote"
                ) from None
            if header is None:
                header = row
                columns_seen.update(header)
                continue
            if not row:
                continue
            if len(row) != len(header):
                raise BatchRejected(
                    f"{uri} line {start}: {len(row)} fields, but the header has {len(header)} ({excerpt(header)})"
                )
            records += 1
            yield start, dict(zip(header, row, strict=True))
    if header is None:
        raise BatchRejected(f"{uri} is empty: write a header line and at least one record")
    if not records:
        raise BatchRejected(
            f"{uri} has a header but no records ({excerpt(header)}): write at least one record below the header"
        )


def iter_parquet(path: Path, uri: str, needed: list[str], columns_seen: set):
    """Stream ``(row index, record)`` of a Parquet file in record batches, reading only the needed columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    if size == 0:
        raise BatchRejected(f"{uri} is empty: write at least one record")
    if head != b"PAR1" or tail != b"PAR1":
        raise BatchRejected(f"{uri} is not a complete Parquet file (truncated or not Parquet); re-export it")
    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        columns_seen.update(names)
        index = 0
        for batch in parquet.iter_batches(batch_size=65536, columns=[c for c in needed if c in names]):
            for record in batch.to_pylist():
                yield index, record
                index += 1
    except (pa.ArrowException, OSError) as exc:
        raise BatchRejected(f"{uri} is not a readable Parquet file: {exc}") from None


def batch_files(batch_uri: str) -> list[str]:
    """The files of a landed batch (a file, a folder, or an S3 prefix)."""
    try:
        files = list_files(batch_uri)
    except ArtifactNotFound as exc:
        raise BatchRejected(f"landing path {exc}") from None
    if not files:
        raise BatchRejected(
            f"landing path {batch_uri} holds no files; write JSONL, CSV or Parquet files there"
        )
    return files


def file_format(uri: str, config: DatasetConfig) -> str:
    """The format a batch file is read as: the config's ``format``, else the file's extension."""
    fmt = config.format if config.format != "auto" else READERS.get(Path(uri).suffix.lower())
    if fmt is None:
        raise BatchRejected(
            f"cannot tell the format of {uri}: use a .jsonl, .csv or .parquet file, or set 'format' in the dataset config"
        )
    return fmt


def _position(fmt: str) -> str:
    """What a raw row's number counts in a file of this format."""
    return "row index" if fmt == "parquet" else "line"


def read_raw_batch(local_files: dict[str, Path], config: DatasetConfig):
    """Read a batch (``{uri: local path}``) into a DataFrame of the columns the config needs.

    Records are streamed and only the mapped and kept fields are collected, so memory grows
    with those columns, not with the raw files. Private columns say where each row was read
    (``_source``: its file's uri; ``_line``: JSONL line, CSV record start line or Parquet row
    index; ``_item``: the exploded item's index) for error messages; they are never published.
    Returns ``(frame, columns the batch has)``.
    """
    import pandas as pd

    needed = [raw for raw in config.columns.model_dump().values() if raw is not None] + list(config.keep)
    read = [config.explode] if config.explode else needed
    fields = needed + (["_item"] if config.explode else [])
    columns: dict[str, list] = {name: [] for name in [*fields, "_source", "_line"]}
    seen: set[str] = set()
    for uri, local in local_files.items():
        fmt = file_format(uri, config)
        if fmt == "parquet":
            records = iter_parquet(local, uri, sorted(set(needed) | set(read)), seen)
        else:
            check_text_file(local, uri)
            records = iter_csv(local, uri, seen) if fmt == "csv" else iter_jsonl(local, uri)
        if config.explode:
            records = _explode(records, config, f"{uri} {_position(fmt)}")
        for line, record in records:
            if fmt == "jsonl" or config.explode:
                seen.update(record)
            for name in fields:
                columns[name].append(record.get(name))
            columns["_source"].append(uri)
            columns["_line"].append(line)
    return pd.DataFrame(columns), seen


def _explode(records, config: DatasetConfig, where: str):
    """One row per item of each record's ``config.explode`` list, item fields as ``<list>.<field>``.

    ``where`` names the file and what its row numbers count (``<uri> line``), for errors.
    """
    field = config.explode
    for number, record in records:
        items = record.get(field)
        if hasattr(items, "tolist"):
            items = items.tolist()
        if not isinstance(items, list):
            raise BatchRejected(
                f"{where} {number}: '{field}' must be a list to explode, got {type(items).__name__}"
            )
        parent = {k: v for k, v in record.items() if k != field}
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise BatchRejected(
                    f"{where} {number}: item {i} of '{field}' must be an object, got {type(item).__name__}"
                )
            yield number, {**parent, **{f"{field}.{k}": v for k, v in item.items()}, "_item": i}


def _where(frame, row: int, config: DatasetConfig) -> str:
    """Where the raw row at position ``row`` was read: its file, line or row index, and exploded item."""
    uri = frame["_source"].iat[row]
    text = f"{uri} {_position(file_format(uri, config))} {frame['_line'].iat[row]}"
    if config.explode:
        text += f" item {frame['_item'].iat[row]}"
    return text


# --- mapping to canonical columns -----------------------------------------------------

CHAT_ROLES = ("system", "user", "assistant")
CHAT_FIX = (
    'write each conversation as a list of {"role": "system" | "user" | "assistant", "content": "..."} '
    "objects that ends with the assistant's reply"
)


def split_conversation(messages) -> tuple[str, str, str]:
    """``(instruction, input, response)`` of a chat conversation (a list of ``{"role", "content"}``).

    The instruction is the first system message ("" without one), the response the final
    assistant message, and the input what comes between: a lone user turn's content, or
    ``User: ...`` / ``Assistant: ...`` lines for several turns. Raises ValueError saying what
    is wrong with the conversation.
    """
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    ):
        raise ValueError(f"must be a list of objects with text 'role' and 'content', got {excerpt(messages)}")
    roles = [m["role"] for m in messages]
    unknown = sorted(set(roles) - set(CHAT_ROLES))
    if unknown:
        raise ValueError(f"has role(s) {unknown}; the roles are {', '.join(CHAT_ROLES)}")
    if not roles or roles[-1] != "assistant":
        last = repr(roles[-1]) if roles else "nothing"
        raise ValueError(f"must end with an assistant message (the response to learn), but ends with {last}")
    system = roles.index("system") if "system" in roles else None
    turns = [m for i, m in enumerate(messages[:-1]) if i != system]
    if len(turns) == 1 and turns[0]["role"] == "user":
        prompt = turns[0]["content"]
    else:
        prompt = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in turns)
    instruction = messages[system]["content"] if system is not None else ""
    return instruction, prompt, messages[-1]["content"]


def _conversations(frame, config: DatasetConfig) -> dict[str, list[str]]:
    """Canonical ``instruction``, ``input`` and ``response`` from the mapped ``messages`` column."""
    column = config.columns.messages
    parts = []
    for row, messages in enumerate(frame[column]):
        try:
            parts.append(split_conversation(messages))
        except ValueError as exc:
            raise BatchRejected(f"{_where(frame, row, config)}: '{column}' {exc}; {CHAT_FIX}") from None
    instructions, prompts, responses = (list(values) for values in zip(*parts, strict=True))
    return {"instruction": instructions, "input": prompts, "response": responses}


def _check_mapped_columns(config: DatasetConfig, columns_seen: set[str]) -> None:
    wanted = [raw for raw in config.columns.model_dump().values() if raw is not None] + list(config.keep)
    missing = [c for c in wanted if c not in columns_seen]
    if missing:
        raise BatchRejected(
            f"dataset config '{config.name}' maps column(s) {missing} that the batch does not have; "
            f"the batch has columns {excerpt(sorted(str(c) for c in columns_seen if c != '_item'), 300)}. Fix 'columns'/'keep' in the dataset config."
        )


def _int_as_text(value):
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _check_text_types(frame, mapping: dict[str, str], config: DatasetConfig) -> None:
    """Every mapped text column holds text or nulls; names each one that does not, with its first example."""
    problems = []
    for canon, raw in mapping.items():
        values = frame[raw]
        wrong = (values.notna() & ~values.map(lambda v: isinstance(v, str))).to_numpy().nonzero()[0]
        if len(wrong):
            example = values.iat[wrong[0]]
            problems.append(
                f"column '{raw}' (mapped to {canon}) must hold text, but {len(wrong)} row(s) hold other types, "
                f"e.g. {_where(frame, wrong[0], config)}: {excerpt(example)} ({type(example).__name__})"
            )
    if problems:
        raise BatchRejected("; ".join(problems) + "; quote the values or fix the producer")


def _check_field_sizes(out, frame, config: DatasetConfig) -> None:
    """No canonical text value over ``validation.max_field_bytes``; names the first one that is."""
    limit = config.validation.max_field_bytes
    for canon in [c for c in TEXT_COLUMNS if c in out.columns]:
        size = out[canon].map(lambda v: len(v.encode("utf-8")) if isinstance(v, str) else 0)
        over = (size > limit).to_numpy().nonzero()[0]
        if len(over):
            raw = getattr(config.columns, canon) or config.columns.messages
            raise BatchRejected(
                f"{_where(frame, over[0], config)}: column '{raw}' (mapped to {canon}) is {int(size.iat[over[0]])} bytes, "
                f"over the limit of {limit} (validation.max_field_bytes); split or drop such records"
            )


def _ids(out, frame, config: DatasetConfig):
    """Row ids: the mapped id (``-<item>`` per exploded item), or a content hash of the row's canonical values.

    A generated id is the first 16 hex digits of the SHA-256 of the row's canonical JSON, so
    repeated rows share an id (the prompt builder drops the repeats as ``duplicate_id``).
    """
    if config.columns.id is not None:
        if config.explode:
            # Exploded items share their parent's id; the item index keeps ids unique and stable.
            return out["id"].astype(str) + "-" + frame["_item"].astype(str)
        return out["id"]
    fields = sorted(config.columns.canonical_fields() - {"id"})
    rows = zip(*(out[f] for f in fields), strict=True)
    return [hash_json(dict(zip(fields, values, strict=True)))[:16] for values in rows]


def to_canonical(frame, config: DatasetConfig, columns_seen: set[str]):
    """Map a raw frame to the canonical columns (``canonical_fields()`` plus ``keep``), in that order.

    Checks presence, types and field size, and splits a mapped ``messages`` conversation.
    Raises BatchRejected naming the file and line of the first offending row.
    """
    import pandas as pd

    _check_mapped_columns(config, columns_seen)
    if len(frame) == 0:
        raise BatchRejected(f"the batch has no rows after mapping with dataset config '{config.name}'")
    mapping = {
        canon: raw
        for canon, raw in config.columns.model_dump().items()
        if raw is not None and canon != "messages"
    }
    if "id" in mapping:  # integer ids are common and unambiguous: they become their decimal text
        frame = frame.assign(**{mapping["id"]: frame[mapping["id"]].map(_int_as_text)})
    _check_text_types(frame, mapping, config)
    out = pd.DataFrame({canon: frame[raw] for canon, raw in mapping.items()}, index=frame.index)
    if config.columns.messages:
        out = out.assign(**_conversations(frame, config))
    fields = config.columns.canonical_fields()
    if "input" not in out.columns:
        out["input"] = ""
    elif "instruction" in fields:
        # With an instruction, an empty input is valid: it is "" rather than missing.
        out["input"] = out["input"].where(out["input"].notna(), "")
    _check_field_sizes(out, frame, config)
    out["id"] = _ids(out, frame, config)
    for col in config.keep:
        out[col] = frame[col]
    return out[[c for c in TEXT_COLUMNS if c in fields] + list(config.keep)]


def prompt_column(config: DatasetConfig) -> str:
    """The checked frame's column the prompt-side rules apply to: ``input``, or ``instruction+input``."""
    return "instruction+input" if "instruction" in config.columns.canonical_fields() else "input"


def with_prompt_text(canonical, config: DatasetConfig):
    """``canonical`` plus the prompt text to check, when an instruction is mapped (never published).

    The prompt text is the instruction and the input joined by a blank line, the input left
    out when empty; it is null only when both are missing.
    """
    column = prompt_column(config)
    if column == "input":
        return canonical
    texts = [
        None if instruction is None and not text else "\n\n".join(p for p in (instruction, text) if p)
        for instruction, text in zip(canonical["instruction"], canonical["input"], strict=True)
    ]
    return canonical.assign(**{column: texts})


# --- expectations ---------------------------------------------------------------------


def build_expectations(config: DatasetConfig, token_counts: bool = False) -> list:
    """The expectation suite for a dataset config; each carries ``meta={"rule", "severity"}``."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations.expectations as gxe

    rules = config.validation
    prompt = prompt_column(config)
    text_cols = [prompt, "response"]

    def meta(rule: str) -> dict:
        return {"rule": rule, "severity": "warning" if rule in rules.warn_only else "critical"}

    exps = [gxe.ExpectTableRowCountToBeBetween(min_value=rules.min_rows, meta=meta("min_rows"))]
    for col in ("id", *text_cols):
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, meta=meta("not_null")))
    for col in text_cols:
        exps.append(gxe.ExpectColumnValuesToNotMatchRegex(column=col, regex=r"^\s*$", meta=meta("not_empty")))
        exps.append(
            gxe.ExpectColumnValuesToNotMatchRegex(column=col, regex=BAD_ENCODING, meta=meta("encoding"))
        )
    if config.columns.id is not None:
        # Generated ids are content hashes: repeats are counted by max_duplicate_rate instead.
        exps.append(gxe.ExpectColumnValuesToBeUnique(column="id", meta=meta("unique_id")))
    exps += [
        gxe.ExpectColumnValueLengthsToBeBetween(
            column=prompt,
            min_value=rules.input_chars[0],
            max_value=rules.input_chars[1],
            meta=meta("input_chars"),
        ),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="response",
            min_value=rules.response_chars[0],
            max_value=rules.response_chars[1],
            meta=meta("response_chars"),
        ),
        gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column=prompt, min_value=1 - rules.max_duplicate_rate, meta=meta("max_duplicate_rate")
        ),
        gxe.ExpectColumnValuesToNotMatchRegexList(
            column=prompt,
            regex_list=[p.pattern for p in PII_PATTERNS.values()],
            mostly=1 - rules.max_pii_rate,
            meta=meta("max_pii_rate"),
        ),
    ]
    if token_counts:
        for col, bounds in (("input", rules.input_tokens), ("response", rules.response_tokens)):
            if bounds:
                exps.append(
                    gxe.ExpectColumnValuesToBeBetween(
                        column=f"_{col}_tokens",
                        min_value=bounds[0],
                        max_value=bounds[1],
                        meta=meta(f"{col}_tokens"),
                    )
                )
    if rules.response_is_json:
        exps.append(gxe.ExpectColumnValuesToBeJsonParseable(column="response", meta=meta("response_is_json")))
    if rules.allowed_labels is not None:
        if config.columns.label is None:
            raise BatchRejected(
                f"dataset config '{config.name}' sets validation.allowed_labels but maps no 'label' column"
            )
        exps.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="label", value_set=rules.allowed_labels, meta=meta("allowed_labels")
            )
        )
    return exps


def run_expectations(frame, config: DatasetConfig, token_counts: bool = False) -> dict:
    """Run the suite through a GE Checkpoint; returns the validation result as a JSON-able dict.

    ``Checkpoint.run()`` reports failures in its result instead of raising, so callers must
    act on ``failures(result)`` themselves.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    asset = context.data_sources.add_pandas("tuneops").add_dataframe_asset(config.name)
    batch_def = asset.add_batch_definition_whole_dataframe("batch")
    suite = context.suites.add(gx.ExpectationSuite(name=f"{config.name}_contract"))
    for exp in build_expectations(config, token_counts):
        suite.add_expectation(exp)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="contract", data=batch_def, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="contract",
            validation_definitions=[definition],
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": 5,
                "unexpected_index_column_names": ["id"],
            },
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    (validation,) = result.run_results.values()
    return validation.to_json_dict()


THRESHOLD_KEYS = ("min_value", "max_value", "mostly", "regex", "regex_list", "value_set")


def failures(result: dict) -> list[dict]:
    """Failed expectations of a GE result dict: rule, severity, column, threshold, observed, examples."""
    out = []
    for r in result["results"]:
        if r["success"]:
            continue
        cfg = r["expectation_config"]
        res = r.get("result", {})
        observed = {
            k: res[k] for k in ("observed_value", "unexpected_count", "unexpected_percent") if k in res
        }
        examples = [str(v)[:120] for v in res.get("partial_unexpected_list", [])[:5]]
        ids = [
            i.get("id") if isinstance(i, dict) else i
            for i in res.get("partial_unexpected_index_list", [])[:5]
        ]
        exc = r.get("exception_info", {})
        out.append(
            {
                "expectation": cfg["type"],
                "rule": (cfg.get("meta") or {}).get("rule", cfg["type"]),
                "severity": (cfg.get("meta") or {}).get("severity", "critical"),
                "column": cfg["kwargs"].get("column"),
                "threshold": {k: cfg["kwargs"][k] for k in THRESHOLD_KEYS if k in cfg["kwargs"]},
                "observed": observed,
                "examples": examples,
                "example_ids": ids,
                "error": exc.get("exception_message") if exc.get("raised_exception") else None,
            }
        )
    return out


def describe(failure: dict) -> str:
    """One readable line for a failed expectation."""
    where = f" on '{failure['column']}'" if failure["column"] else ""
    text = f"[{failure['severity']}] {failure['rule']}{where}: {failure['expectation']} failed; threshold {failure['threshold']}; observed {failure['observed']}"
    if failure["examples"]:
        text += f"; examples (ids {failure['example_ids']}): {failure['examples']}"
    if failure["error"]:
        text += f"; error: {failure['error']}"
    return text


# --- the step -------------------------------------------------------------------------


def _tokenizer(config: DatasetConfig, store: ArtifactStore):
    """The dataset's configured tokenizer (token-length rules and EDA), or None."""
    if not config.tokenizer:
        return None
    from transformers import AutoTokenizer

    from tuneops.models.base_model import resolve_tokenizer

    return AutoTokenizer.from_pretrained(resolve_tokenizer(config.tokenizer, store))


def _token_lengths(tokenizer, values, chunk: int = 10_000) -> list[int]:
    """Token count per value, tokenized in chunks so token ids never pile up in memory."""
    texts = [v if isinstance(v, str) else "" for v in values]
    lengths: list[int] = []
    for start in range(0, len(texts), chunk):
        lengths += [
            len(ids) for ids in tokenizer(texts[start : start + chunk], add_special_tokens=False)["input_ids"]
        ]
    return lengths


def _previous_batch(store: ArtifactStore, config: DatasetConfig, key: str):
    import pandas as pd

    earlier = [k for k in store.list_keys(f"validated/{config.name}") if k != key]
    if not earlier:
        return None
    latest = max(
        earlier,
        key=lambda k: json.loads((store.fetch_dir(k) / "meta.json").read_text()).get("validated_at", ""),
    )
    return pd.read_parquet(store.fetch_dir(latest) / "data.parquet")


def _reject(
    message: str,
    report: str,
    out: Path,
    local_files: dict[str, Path],
    file_hashes: dict[str, str],
    store: ArtifactStore,
    key: str,
    landing_roots: Sequence[str],
    cache_dir: Path,
) -> BatchRejected:
    """Move a rejected batch to quarantine ``key`` with its reports, as a transaction; returns the error.

    The files are copied from the local copies already read (no second download) and published
    with the reports in ``out`` (atomically: complete or invisible). The published copy is then
    read back and checked against the content hashes taken when the batch was read, and only
    then is each source removed, and only if it is still inside a landing root and still holds
    the content that was quarantined (a file rewritten meanwhile is new data and stays). A crash
    at any point leaves the source, the complete quarantine copy, or both; never neither.
    """
    (out / "summary.md").write_text(report)
    listing = []
    for i, (uri, local) in enumerate(local_files.items()):
        name = f"files/{i:03d}-{Path(uri).name}"
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
        listing.append({"source": uri, "file": name, "sha256": file_hashes[uri]})
    (out / "files.json").write_text(json.dumps(listing, indent=2))
    where = store.publish_dir(out, key)
    published = store.fetch_dir(key)
    for entry in json.loads((published / "files.json").read_text()):
        copy = published / entry["file"]
        if not copy.is_file() or hash_file(copy) != file_hashes.get(entry["source"], entry["sha256"]):
            raise RuntimeError(
                f"the quarantine copy {store.uri(key)}/{entry['file']} does not match {entry['source']}; "
                "the source was left in place. Delete the quarantine folder and rerun the validation"
            )
    kept = []
    for uri in local_files:
        confine(uri, landing_roots)
        if _current_digest(uri, cache_dir) != file_hashes[uri]:
            log.warning("%s changed after it was read; it is new data and stays where it is", uri)
            kept.append(uri)
            continue
        remove_file(uri)
    note = f"batch moved to {where}"
    if kept:
        note += f"; {len(kept)} file(s) changed while being validated and were left in place: {excerpt(kept)}"
    rejected = BatchRejected(f"{message}\n({note})")
    rejected.report_key = key
    return rejected


def _current_digest(uri: str, cache_dir: Path) -> str | None:
    """The SHA-256 of what ``uri`` holds now (an S3 object is downloaded again), or None when it is gone."""
    try:
        return hash_file(fetch_file(uri, cache_dir))
    except ArtifactNotFound:
        return None


def validate_batch(
    batch_uri: str, config: DatasetConfig, store: ArtifactStore, cache_dir: Path, landing_roots: Sequence[str]
) -> dict:
    """Validate a raw batch and publish it; returns a summary with ``uri``, ``key``, ``rows``, ``warnings``.

    ``batch_uri`` must lie inside one of ``landing_roots`` (``tuneops.core.landing.confine``): one that
    does not is refused with OutsideLandingRoots before anything is read. Raises BatchRejected
    naming every critical failure; the files then move to quarantine (see ``_reject``).
    """
    from datetime import UTC, datetime

    batch_uri = confine(batch_uri, landing_roots)
    local_files = {uri: fetch_file(uri, cache_dir) for uri in batch_files(batch_uri)}
    file_hashes = {uri: hash_file(path) for uri, path in local_files.items()}
    batch_hash = hash_json(
        {"files": sorted(file_hashes.values()), "config": config.model_dump(), "v": __version__}
    )[:16]
    key = f"validated/{config.name}/{batch_hash}"
    quarantine_key = f"quarantine/{config.name}/{batch_hash}"
    if store.exists(key):
        meta = json.loads((store.fetch_dir(key) / "meta.json").read_text())
        log.info("batch %s already validated at %s; reusing it", batch_uri, store.uri(key))
        return {**meta, "uri": store.uri(key), "key": key, "reused": True}

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)

        def reject(message: str, report: str) -> BatchRejected:
            return _reject(
                message,
                report,
                out,
                local_files,
                file_hashes,
                store,
                quarantine_key,
                landing_roots,
                cache_dir,
            )

        try:
            frame, columns_seen = read_raw_batch(local_files, config)
            canonical = to_canonical(frame, config, columns_seen)
        except BatchRejected as exc:
            report = f"# Rejected batch {batch_hash}\n\n{exc}\n"
            raise reject(str(exc), report) from None
        tokenizer = _tokenizer(config, store)
        checked = with_prompt_text(canonical, config)
        count_tokens = None
        if tokenizer is not None:
            checked = checked.assign(
                _input_tokens=_token_lengths(tokenizer, checked[prompt_column(config)]),
                _response_tokens=_token_lengths(tokenizer, checked["response"]),
            )

            def count_tokens(text: str) -> int:
                return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        result = run_expectations(checked, config, token_counts=tokenizer is not None)
        failed = failures(result)
        critical = [f for f in failed if f["severity"] == "critical"]
        warnings = [f for f in failed if f["severity"] == "warning"]
        (out / "validation.json").write_text(json.dumps(result, indent=2, default=str))
        lines = [describe(f) for f in failed] or ["all expectations passed"]
        if critical:
            message = (
                f"batch {batch_uri} failed {len(critical)} critical expectation(s) of dataset '{config.name}':\n  - "
                + "\n  - ".join(describe(f) for f in critical)
            )
            report = f"# Rejected batch {batch_hash}\n\n" + "\n".join(f"- {x}" for x in lines) + "\n"
            raise reject(message, report)
        eda = build_report(canonical, config, _previous_batch(store, config, key), count_tokens, out / "eda")
        meta = {
            "dataset": config.name,
            "batch_hash": batch_hash,
            "source": batch_uri,
            "files": file_hashes,
            "rows": int(len(canonical)),
            "warnings": [describe(w) for w in warnings],
            "validated_at": datetime.now(UTC).isoformat(),
        }
        canonical.to_parquet(out / "data.parquet", index=False)
        (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        (out / "summary.md").write_text(
            f"# Validated batch {batch_hash}\n\nsource: {batch_uri}\nrows: {meta['rows']}\n\n"
            + "\n".join(f"- {x}" for x in lines)
            + "\n\nEDA report: eda/report.html\n"
        )
        uri = store.publish_dir(out, key)
    for w in warnings:
        log.warning("batch %s: %s", batch_hash, describe(w))
    log.info("validated %d rows from %s -> %s (EDA: %s/eda/report.html)", meta["rows"], batch_uri, uri, uri)
    return {**meta, "uri": uri, "key": key, "reused": False, "eda": eda}


def build_report(canonical, config: DatasetConfig, previous, count_tokens, out_dir: Path) -> dict:
    """The batch's EDA report (HTML + PNG plots) and its headline figures."""
    from tuneops.data.eda import build_eda_report

    summary = build_eda_report(
        canonical,
        out_dir,
        text_columns=["input", "response"],
        label_column="label" if "label" in canonical.columns else None,
        previous=previous,
        count_tokens=count_tokens,
        title=f"{config.name} batch",
    )
    return {"rows": summary["rows"], "plots": summary.get("plots", [])}
