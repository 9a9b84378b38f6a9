"""Onboarding: propose a column mapping from a sample file, and write a project that runs as it is.

``tuneops init-dataset SAMPLE --name NAME`` reads at most ``SAMPLE_ROWS`` records of a JSONL, CSV
or Parquet sample and recognises its shape: chat messages (a column of ``{role, content}``
lists), an instruction with nested instances (a column of ``{input, output}`` lists, exploded
into one row per item), alpaca-like instruction/input/output columns, or prompt/completion
pairs. It derives the data contract from what the sample holds (bounds that cover it with a
margin, the duplicate rate it measured) and writes three commented YAML files: the project, its
dataset config and its recipe. Each is loaded with its config loader before it is put in place,
so what is written is what runs; the user edits only what they want different.

The proposal is pure functions over the sampled records (``propose_columns``, ``canonical_rows``,
``profile_sample``, ``validation_rules``); ``init_dataset`` reads, writes and verifies.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tuneops.config import (
    Cleaning,
    ConfigError,
    load_dataset_config,
    load_project,
    load_recipe,
    load_safety_suite,
)
from tuneops.config.project import NAME_PATTERN, project_path
from tuneops.core.excerpt import excerpt
from tuneops.core.landing import OutsideLandingRoots, confine
from tuneops.core.pii import PII_PATTERNS
from tuneops.core.settings import Settings
from tuneops.data.validation import (
    CHAT_FIX,
    READERS,
    BatchRejected,
    check_text_file,
    iter_csv,
    iter_jsonl,
    split_conversation,
)

SAMPLE_ROWS = 2000
DEFAULT_BASE_MODEL = "builtin:smollm2-135m-instruct"
#: base model -> (LoRA learning rate, why) for the recipes init-dataset writes; others get 2e-4.
LEARNING_RATES = {
    "builtin:tiny-llama": (0.003, "the tiny embedded model"),
    "builtin:smollm2-135m-instruct": (
        0.001,
        "a 135M pretrained model: 3e-3 is too high, 2e-4 too slow for 200 steps",
    ),
}
SAFETY_SUITE = "generic"
TEMPLATE = "generic_v1"
CHAT_TEMPLATE = "generic_chat_v1"  # for a base model with a chat template of its own
MAX_SEQ_LEN = 256
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
OVERRIDE_ROLES = ("instruction", "input", "response", "id", "messages", "explode")
CANONICAL = ("instruction", "input", "response")
# The end-of-text markers cleaning strips by default; here they are only counted, to tell the user.
END_MARKERS = tuple(Cleaning().end_markers)
# The share of sampled values that must fit a shape for a column to have that shape.
MOSTLY = 0.9
CHARS_PER_TOKEN = 3  # a rough, cautious estimate for English text and BPE tokenizers

# Column names, normalised (lower case, runs of other characters as "_"), most telling first.
INSTRUCTION_NAMES = ("instruction", "instructions", "task", "definition", "system_prompt", "system")
INPUT_NAMES = (
    "prompt",
    "input",
    "question",
    "query",
    "source",
    "text",
    "context",
    "headline",
    "title",
    "article",
    "document",
    "inputs",
    "src",
)
RESPONSE_NAMES = (
    "completion",
    "response",
    "output",
    "answer",
    "target",
    "summary",
    "reply",
    "outputs",
    "tgt",
)
PAIRS = (
    ("prompt", "completion"),
    ("prompt", "response"),
    ("question", "answer"),
    ("input", "output"),
    ("source", "target"),
    ("text", "summary"),
    ("context", "response"),
    ("query", "response"),
)
ID_NAMES = ("id", "uuid", "guid")
CHAT_NAMES = ("messages", "conversations", "conversation", "chat", "dialogue", "turns")


class OnboardingError(ValueError):
    """The sample cannot be onboarded as it is; the message names the file and what to do."""


@dataclass(frozen=True)
class Proposal:
    """The proposed dataset config ``columns`` (canonical name -> raw column) and ``explode``.

    ``shape`` names what was recognised; ``notes`` say how each choice was made, for the user.
    """

    columns: dict[str, str]
    shape: str
    explode: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SampleProfile:
    """What the canonical rows of a sample look like: the figures the data contract is derived from."""

    rows: int
    prompt_chars: tuple[int, int]  # the prompt text the prompt-side rules check (see ``canonical_rows``)
    response_chars: tuple[int, int]
    response_chars_p95: int
    example_chars: list[int]  # prompt + response, per row
    duplicate_rate: float  # rows whose prompt text repeats an earlier row's
    pii_rate: float  # prompts holding an e-mail, phone, card or IP address
    all_json: bool  # every response is a JSON object
    markers: dict[str, int]  # end-of-text marker -> responses ending in it
    empty_prompts: int
    empty_responses: int


@dataclass(frozen=True)
class Onboarded:
    """What ``init_dataset`` did: the proposal, the sample's profile, and the files it wrote."""

    name: str
    sample: Path
    records: int
    proposal: Proposal
    profile: SampleProfile
    files: dict[str, Path]  # "project", "dataset", "recipe" -> the file written


# --- reading the sample ----------------------------------------------------------------


def read_sample(path: Path, limit: int = SAMPLE_ROWS) -> list[dict]:
    """The first ``limit`` records of a JSONL, CSV or Parquet file, as dicts.

    Raises OnboardingError naming the file and the fix when it is missing, of an unknown kind,
    unreadable or empty.
    """
    from contextlib import closing
    from itertools import islice

    path = Path(path)
    fmt = READERS.get(path.suffix.lower())
    if not path.exists():
        raise OnboardingError(
            f"sample file {path} does not exist; pass the path of a .jsonl, .csv or .parquet file"
        )
    if path.is_dir():
        raise OnboardingError(f"{path} is a folder; pass one file of the data (.jsonl, .csv or .parquet)")
    if fmt is None:
        raise OnboardingError(
            f"cannot tell the format of {path} from its extension {path.suffix or '(none)'!r}: "
            "rename it to .jsonl, .csv or .parquet, or convert it to one of those"
        )
    try:
        if fmt == "parquet":
            records = _parquet_head(path, limit)
        else:
            check_text_file(path, str(path))
            reader = iter_csv(path, str(path), set()) if fmt == "csv" else iter_jsonl(path, str(path))
            with closing(reader):
                records = [record for _, record in islice(reader, limit)]
    except BatchRejected as exc:
        raise OnboardingError(f"{exc}; fix the sample, or pass another one") from None
    if not records:
        raise OnboardingError(f"{path} holds no records; pass a sample with at least one")
    return records


def _parquet_head(path: Path, limit: int) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return next(pq.ParquetFile(path).iter_batches(batch_size=limit)).to_pylist()
    except StopIteration:
        return []
    except (pa.ArrowException, OSError) as exc:
        raise OnboardingError(
            f"{path} is not a readable Parquet file ({exc}); re-export it, or pass a .jsonl or .csv sample"
        ) from None


# --- recognising the shape -------------------------------------------------------------


_LETTER = re.compile(r"[^\W\d_]")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


def _columns(records: Sequence[dict]) -> list[str]:
    """Every column of the records, in the order first seen."""
    return list(dict.fromkeys(key for record in records for key in record))


def _is_text(values: list) -> bool:
    """Mostly strings (missing values aside), some with letters (a CSV column of numbers is not text)."""
    present = [v for v in values if v is not None]
    strings = [v for v in present if isinstance(v, str)]
    return len(strings) >= MOSTLY * len(present) and any(_LETTER.search(v) for v in strings)


def _text_columns(records: Sequence[dict]) -> list[str]:
    return [c for c in _columns(records) if _is_text([r.get(c) for r in records])]


def _looks_like_id(column: str) -> bool:
    norm = _norm(column)
    return norm in ID_NAMES or norm.endswith(("_id", "_uuid")) or bool(re.search(r"[a-z]I[dD]$", column))


def _lists_of_objects(values: list) -> list[list[dict]] | None:
    """The values as lists of objects, when they mostly are and at least one is not empty."""
    present = [v for v in values if v is not None]
    lists = [v for v in present if isinstance(v, list) and all(isinstance(i, dict) for i in v)]
    if not present or len(lists) < MOSTLY * len(present) or not any(lists):
        return None
    return lists


def _is_chat(values: list) -> bool:
    lists = _lists_of_objects(values)
    return lists is not None and all("role" in t and "content" in t for turns in lists for t in turns)


def _item_text_keys(lists: list[list[dict]]) -> list[str]:
    items = [item for items in lists for item in items]
    keys = list(dict.fromkeys(k for item in items for k in item))
    return [k for k in keys if _is_text([item.get(k) for item in items])]


def _named(candidates: Sequence[str], names: Sequence[str]) -> str | None:
    """The first of ``candidates`` whose normalised name is in ``names``, by the order of ``names``."""
    by_name: dict[str, str] = {}
    for column in candidates:
        by_name.setdefault(_norm(column), column)
    return next((by_name[n] for n in names if n in by_name), None)


def _id_text(value):
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _find_id(records: Sequence[dict]) -> tuple[str | None, str]:
    """An id column (named like id, uuid or ``*_id``) whose sampled values are unique non-empty text
    or integers (validation reads integer ids as their decimal text)."""
    reasons = []
    for column in filter(_looks_like_id, _columns(records)):
        values = [_id_text(r.get(column)) for r in records]
        if not all(isinstance(v, str) and v.strip() for v in values):
            kinds = sorted({type(v).__name__ for v in values if not isinstance(v, str)} or {"empty"})
            reasons.append(f"'{column}' holds {'/'.join(kinds)} values, not text in every row")
        elif len(set(values)) < len(values):
            reasons.append(f"'{column}' repeats values in the sample")
        else:
            return column, f"id <- '{column}': named like an id, unique and non-empty in the sample"
    why = f" ({'; '.join(reasons)})" if reasons else ""
    return None, f"no id column{why}: ids are generated from each row's content (map one with --id COL)"


def _check_overrides(records: Sequence[dict], overrides: Mapping[str, str], source: str) -> dict[str, str]:
    """The overrides, exploded item fields named ``<list>.<field>``; raises for a column the sample lacks."""
    unknown = sorted(set(overrides) - set(OVERRIDE_ROLES))
    if unknown:
        raise OnboardingError(f"unknown override(s) {unknown}; valid: {', '.join(OVERRIDE_ROLES)}")
    if overrides.get("messages") and {"input", "response", "instruction"} & set(overrides):
        raise OnboardingError(
            "--messages maps the whole chat (system -> instruction, the earlier turns -> input, the final "
            "assistant reply -> response): pass it without --input/--response/--instruction"
        )
    columns = _columns(records)
    explode = overrides.get("explode")
    item_keys: list[str] = []
    if explode:
        lists = _lists_of_objects([r.get(explode) for r in records]) if explode in columns else None
        if lists is None:
            raise OnboardingError(
                f"--explode {explode!r}: {source} has no column {explode!r} holding lists of objects; "
                f"its columns are {excerpt(columns, 300)}"
            )
        item_keys = list(dict.fromkeys(k for items in lists for item in items for k in item))
    checked = {}
    for role, column in overrides.items():
        field = column.removeprefix(f"{explode}.") if explode else column
        if role == "explode" or column in columns:
            checked[role] = column
        elif explode and role in ("input", "response") and field in item_keys:
            checked[role] = f"{explode}.{field}"
        else:
            known = columns + [f"{explode}.{k}" for k in item_keys]
            raise OnboardingError(
                f"--{role} {column!r}: {source} has no such column; its columns are {excerpt(known, 300)}"
            )
    return checked


def propose_columns(
    records: Sequence[dict], overrides: Mapping[str, str] | None = None, source: str = "the sample"
) -> Proposal:
    """Propose the dataset config's ``columns`` (and ``explode``) for sampled ``records``.

    Recognised in this order: chat messages, an instruction with nested instances, alpaca-like
    instruction/input/output, prompt/completion pairs; as a last resort the two longest text
    columns, the shorter as input. ``overrides`` (role -> column, roles as in ``OVERRIDE_ROLES``)
    pin roles; the rest is proposed around them. Raises OnboardingError, naming ``source``, when
    the sample has no usable text columns or an override names a column it lacks.
    """
    overrides = _check_overrides(records, {k: v for k, v in (overrides or {}).items() if v}, source)
    if overrides.get("id"):
        id_column, id_note = overrides["id"], f"id <- '{overrides['id']}' (--id)"
    else:
        id_column, id_note = _find_id(records)
    ids = {"id": id_column} if id_column else {}

    chat = overrides.get("messages")
    if not chat and not {"input", "response", "instruction", "explode"} & set(overrides):
        chats = [c for c in _columns(records) if _is_chat([r.get(c) for r in records])]
        chat = _named(chats, CHAT_NAMES) or next(iter(chats), None)
    if chat:
        note = (
            f"messages <- '{chat}': a chat of {{role, content}} turns (system -> instruction, the turns "
            "before the final assistant reply -> input, that reply -> response)"
        )
        return Proposal({**ids, "messages": chat}, "chat messages", None, (note, id_note))

    nested = _propose_nested(records, overrides, id_column)
    if nested is not None:
        columns, explode, notes = nested
        return Proposal({**ids, **columns}, "instruction + nested instances", explode, (*notes, id_note))

    columns, shape, notes = _propose_flat(records, overrides, source)
    return Proposal({**ids, **columns}, shape, None, (*notes, id_note))


def _propose_nested(records, overrides, id_column) -> tuple[dict, str, list[str]] | None:
    """Columns for a list column of objects with input- and output-like keys, exploded into rows."""
    explode = overrides.get("explode")
    if not explode and {"input", "response"} & set(overrides):
        return None
    for column in [explode] if explode else [c for c in _columns(records) if c != id_column]:
        lists = _lists_of_objects([r.get(column) for r in records])
        if lists is None:
            continue
        keys = _item_text_keys(lists)
        item_input = _named(keys, INPUT_NAMES)
        item_output = _named([k for k in keys if k != item_input], RESPONSE_NAMES)
        if item_output is None and not overrides.get("response"):
            if explode:
                raise OnboardingError(
                    f"--explode {explode!r}: its items have no output-like text field (fields: {keys}); "
                    f"name one with --response {explode}.FIELD"
                )
            continue
        top = [c for c in _text_columns(records) if c not in (column, id_column)]
        instruction = overrides.get("instruction") or _named(top, INSTRUCTION_NAMES)
        columns = {"instruction": instruction} if instruction else {}
        if overrides.get("input") or item_input:
            columns["input"] = overrides.get("input") or f"{column}.{item_input}"
        columns["response"] = overrides.get("response") or f"{column}.{item_output}"
        notes = [
            f"explode '{column}': each record holds a list of objects; one row per item, "
            f"its fields named '{column}.<field>'"
        ]
        if not instruction:
            notes.append("no instruction-like column at the top level: the prompt is the item's input alone")
        return columns, column, notes
    return None


def _propose_flat(records, overrides, source) -> tuple[dict, str, list[str]]:
    """Columns for flat records: alpaca-like instruction/input/output, or an input/response pair."""
    pinned = {role: overrides[role] for role in CANONICAL if role in overrides}
    free = [c for c in _text_columns(records) if not _looks_like_id(c) and c not in pinned.values()]
    if len(free) + len(pinned) < 2:
        described = ", ".join(f"{c} ({_kind(records, c)})" for c in _columns(records)) or "none"
        raise OnboardingError(
            f"{source} has no usable text columns for an input and a response (its columns: {described}); "
            "init-dataset needs two text columns, or a chat column of {role, content} lists: name them "
            "with --input COL --response COL (or --messages COL), or pass a sample of the text data"
        )
    instruction = pinned.get("instruction")
    if instruction is None and len(free) >= 2:
        instruction = _named(free, INSTRUCTION_NAMES)
        if instruction:
            free.remove(instruction)
    if instruction:
        response = pinned.get("response") or _named(free, RESPONSE_NAMES)
        if response is None:
            others = [c for c in free if c != pinned.get("input")]
            if len(others) != 1:
                raise OnboardingError(
                    f"{source}: '{instruction}' looks like an instruction, but no column looks like its "
                    f"response among {others}; name it with --response COL"
                )
            response = others[0]
        free = [c for c in free if c != response]
        input_column = pinned.get("input") or _named(free, ("input", "context", *INPUT_NAMES))
        columns = {
            "instruction": instruction,
            **({"input": input_column} if input_column else {}),
            "response": response,
        }
        notes = [] if input_column else ["no input column: the prompt is the instruction alone"]
        return columns, "instruction/input/output", notes

    input_column, response, how = _pair(records, free, pinned.get("input"), pinned.get("response"))
    notes = [how] if how else []
    shape = "input/response pairs" + (" (as given)" if {"input", "response"} <= set(pinned) else "")
    return {"input": input_column, "response": response}, shape, notes


def _pair(
    records, free: list[str], pinned_input: str | None, pinned_response: str | None
) -> tuple[str, str, str]:
    """``(input, response, note)``: by a known pair of names, by name, or by length (the note says how)."""
    if pinned_input and pinned_response:
        return pinned_input, pinned_response, ""
    if not (pinned_input or pinned_response):
        by_name = {_norm(c): c for c in reversed(free)}
        for a, b in PAIRS:
            if a in by_name and b in by_name:
                return by_name[a], by_name[b], ""
    input_column = pinned_input or _named(free, INPUT_NAMES)
    response = pinned_response or _named([c for c in free if c != input_column], RESPONSE_NAMES)
    if input_column and response:
        return input_column, response, ""
    named = input_column or response
    others = sorted((c for c in free if c != named), key=lambda c: -_mean_length(records, c))
    if named:
        role = "response" if input_column else "input"
        if not others:
            raise OnboardingError(f"no text column is left for the {role}; name it with --{role} COL")
        pair = (named, others[0]) if input_column else (others[0], named)
        how = "the only other text column" if len(others) == 1 else "the longest other text column"
        return *pair, f"{role} <- '{others[0]}': {how} (no {role}-like name); check it, or pass --{role} COL"
    shorter, longer = sorted(others[:2], key=lambda c: _mean_length(records, c))
    return (
        shorter,
        longer,
        f"no column names matched a known pair: took the two longest text columns of {free}, '{shorter}' "
        f"(the shorter, as input) and '{longer}' (as response); check them, or pass --input/--response",
    )


def _mean_length(records, column: str) -> float:
    values = [r.get(column) for r in records]
    return sum(len(v) for v in values if isinstance(v, str)) / max(len(values), 1)


def _kind(records, column: str) -> str:
    kinds = sorted({type(r.get(column)).__name__ for r in records if r.get(column) is not None})
    return "text without letters" if kinds == ["str"] else "/".join(kinds) or "empty"


# --- the sample as validation sees it ----------------------------------------------------


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def canonical_rows(records: Sequence[dict], proposal: Proposal) -> list[dict[str, str]]:
    """The sample as validation will see it: ``instruction``, ``input`` and ``response`` ("" when absent),
    and ``prompt``, the text the prompt-side rules check: with an instruction, the instruction and the
    input joined by a blank line, as ``tuneops.data.validation.with_prompt_text`` joins them.

    Raises OnboardingError naming a sampled chat conversation that validation would refuse.
    """
    columns = proposal.columns
    rows = []
    for number, record in enumerate(records, start=1):
        if "messages" in columns:
            try:
                parts = split_conversation(record.get(columns["messages"]))
            except ValueError as exc:
                raise OnboardingError(
                    f"sampled record {number}: '{columns['messages']}' {exc}; {CHAT_FIX}, "
                    "or map other columns with --input/--response"
                ) from None
            rows.append(dict(zip(CANONICAL, parts, strict=True)))
            continue
        if proposal.explode:
            items = record.get(proposal.explode)
            flat = [
                {**record, **{f"{proposal.explode}.{k}": v for k, v in item.items()}}
                for item in (items if isinstance(items, list) else [])
                if isinstance(item, dict)
            ]
        else:
            flat = [record]
        rows += [{role: _text(row.get(columns.get(role))) for role in CANONICAL} for row in flat]
    with_instruction = bool({"instruction", "messages"} & set(columns))
    for row in rows:
        parts = (row["instruction"], row["input"]) if with_instruction else (row["input"],)
        row["prompt"] = "\n\n".join(p for p in parts if p)
    return rows


def _ends_in(text: str) -> str | None:
    stripped = text.rstrip()
    return next((m for m in END_MARKERS if stripped.endswith(m)), None)


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def profile_sample(rows: Sequence[dict[str, str]]) -> SampleProfile:
    """The figures of ``canonical_rows`` the data contract is derived from. Raises OnboardingError for none."""
    if not rows:
        raise OnboardingError("the sample holds no rows once mapped (is every nested list empty?)")
    prompts = [r["prompt"] for r in rows]
    responses = [r["response"] for r in rows]
    prompt_lengths = [len(v) for v in prompts]
    response_lengths = sorted(len(v) for v in responses)
    markers: dict[str, int] = {}
    for response in responses:
        marker = _ends_in(response)
        if marker:
            markers[marker] = markers.get(marker, 0) + 1
    return SampleProfile(
        rows=len(rows),
        prompt_chars=(min(prompt_lengths), max(prompt_lengths)),
        response_chars=(response_lengths[0], response_lengths[-1]),
        response_chars_p95=response_lengths[math.ceil(0.95 * len(rows)) - 1],
        example_chars=[len(r["prompt"]) + len(r["response"]) for r in rows],
        duplicate_rate=1 - len(set(prompts)) / len(rows),
        pii_rate=sum(any(p.search(v) for p in PII_PATTERNS.values()) for v in prompts) / len(rows),
        all_json=all(_is_json_object(v) for v in responses),
        markers=markers,
        empty_prompts=sum(not v.strip() for v in prompts),
        empty_responses=sum(not v.strip() for v in responses),
    )


def _upper_bound(n: int) -> int:
    """Four times ``n`` (at least 1,000), rounded up to two significant digits: room above the
    sample, so the next real batch is not refused for a longer row than a sample happened to hold."""
    value = max(4 * n, 1000)
    step = 10 ** max(len(str(value)) - 2, 0)
    return min(math.ceil(value / step) * step, 65536)


def validation_rules(profile: SampleProfile, proposal: Proposal) -> tuple[dict, dict[str, str]]:
    """``(rules, comments)``: the dataset config's ``validation`` section derived from the sample, and a
    comment per key saying what was measured. Bounds cover the sample with a margin; the duplicate rate
    allowed is the sample's plus 0.05."""
    with_instruction = {"instruction", "messages"} & set(proposal.columns)
    prompts = "prompts (instruction + input)" if with_instruction else "inputs"
    low, high = profile.prompt_chars
    response_low, response_high = profile.response_chars
    rules = {
        "min_rows": min(10, profile.rows),
        "input_chars": [1, _upper_bound(high)],
        "response_chars": [1, _upper_bound(response_high)],
        "max_duplicate_rate": min(1.0, math.ceil((profile.duplicate_rate + 0.05) * 100) / 100),
        "max_pii_rate": 0.01,
        "response_is_json": profile.all_json,
        "warn_only": ["max_pii_rate"],
    }
    comments = {
        "min_rows": "a batch with fewer rows is refused",
        "input_chars": f"checks the {prompts}; the sample's: {low}-{high} characters",
        "response_chars": f"the sample's: {response_low}-{response_high} characters",
        "max_duplicate_rate": f"measured on the sample: {profile.duplicate_rate:.1%} of rows repeat an earlier prompt",
        "max_pii_rate": f"measured on the sample: {profile.pii_rate:.1%}; cleaning redacts PII either way",
        "response_is_json": "every sampled response is a JSON object"
        if profile.all_json
        else "the sampled responses are not all JSON objects",
        "warn_only": "these rules warn instead of refusing the batch",
    }
    return rules, comments


# --- writing the project ----------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Mappings as blocks, lists inline: ``fields: [instruction, input]``."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def _section(comment: str, data: dict, comments: Mapping[str, str] | None = None) -> str:
    """``data`` as YAML under ``comment`` (one ``#`` line each), with ``comments`` after their keys."""
    comments = comments or {}
    lines = [f"# {line}" for line in comment.strip().splitlines()]
    dumped = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
    for line in dumped.splitlines():
        key = line.strip().split(":", 1)[0]
        lines.append(f"{line}   # {comments[key]}" if key in comments else line)
    return "\n".join(lines) + "\n"


def model_name_for(name: str) -> str:
    """The registered model name of project ``name``: ``tuneops-<name>``, underscores as dashes."""
    return "tuneops-" + name.replace("_", "-")


def dataset_yaml(
    name: str, proposal: Proposal, profile: SampleProfile, base_model: str, sample: str, chat: bool = False
) -> str:
    """The commented dataset config for the proposal, its validation rules derived from ``profile``;
    ``chat``: the base model is an instruct model with a chat template of its own, which prompts use."""
    rules, rule_comments = validation_rules(profile, proposal)
    with_instruction = {"instruction", "messages"} & set(proposal.columns)
    sections = [
        f"# Dataset '{name}', proposed by `tuneops init-dataset` from {sample} ({proposal.shape}).\n"
        "# It runs as it is: edit what you want different and keep the rest.\n",
        _section("The name batches are validated and versioned under.", {"name": name}),
        _section("How batch files are read: auto (by extension), jsonl, csv or parquet.", {"format": "auto"}),
        _section(
            "Canonical field <- raw column of your batches: id (absent: a content hash per row), instruction,\n"
            "input, response; or messages, a chat list of {role, content} (system -> instruction, the turns\n"
            "before the final assistant reply -> input, that reply -> response).",
            {"columns": proposal.columns},
        ),
    ]
    if proposal.explode:
        sections.append(
            _section(
                f"Each record holds a list '{proposal.explode}': one row per item, its fields named "
                f"'{proposal.explode}.<field>'.",
                {"explode": proposal.explode},
            )
        )
    sections += [
        _section(
            "Token-length rules and cleaning.token_bounds count tokens with the base model's own tokenizer.",
            {"tokenizer": base_model},
        ),
        _section(
            "The data contract every batch must meet (a batch that breaks it is quarantined). Bounds cover\n"
            "the sample with a margin: tighten them once you know your data. Rules in warn_only only warn.",
            {"validation": rules},
            rule_comments,
        ),
        _section(
            (
                "The prompt template: the shipped generic_chat_v1 makes instruction and input one user turn in\n"
                "the base model's own chat template, the response its reply (the loss sees only the reply)."
                if chat
                else "The prompt template: the shipped generic_v1 lays out instruction, input and response for any\n"
                "model."
            )
            + " Name your own template file (a path relative to this file) to change the prompt.",
            {"template": CHAT_TEMPLATE if chat else TEMPLATE},
        ),
        _section(
            "Shares of rows held out, by a hash of the id (rows never move between splits); the gate scores test.",
            {"splits": {"validation": 0.1, "test": 0.1}},
        ),
        _section(
            "What build-prompts does before splitting: redact PII, drop exact duplicates and near-duplicate\n"
            "prompts (the fields compared), drop examples outside token_bounds (prompt + response tokens, at\n"
            "most the recipe's train.max_seq_len), and strip end-of-text markers from the end of responses\n"
            f"(end_markers, by default {', '.join(END_MARKERS)}).",
            {
                "cleaning": {
                    "redact_pii": ["email", "phone", "card", "ip"],
                    "near_duplicates": {
                        "threshold": 0.85,
                        "fields": ["instruction", "input"] if with_instruction else ["input"],
                    },
                    "token_bounds": [1, MAX_SEQ_LEN],
                }
            },
            {"threshold": "estimated Jaccard of character 5-grams; null keeps exact dedup only"},
        ),
        _section(
            "Which accepted batches make one training dataset: all, or a window (mode: window, window_days: 30).",
            {"accumulate": {"mode": "all"}},
        ),
    ]
    return "\n".join(sections)


def recipe_yaml(name: str, base_model: str, profile: SampleProfile) -> str:
    """The commented recipe: LoRA on ``base_model``, a short run that fits a CPU or a GPU, a generic gate."""
    rate, why = LEARNING_RATES.get(base_model, (0.0002, "a usual LoRA rate for hub models"))
    max_new = min(256, max(16, math.ceil(profile.response_chars_p95 / CHARS_PER_TOKEN / 8) * 8))
    sections = [
        f"# Recipe of project '{name}', written by `tuneops init-dataset`. Edit what you want different.\n",
        _section(
            "The model to fine-tune: builtin:smollm2-135m-instruct (a real instruct model, shipped), builtin:tiny-llama\n"
            "(embedded, trains on a CPU in seconds), imported:<name> (tuneops base-model import), a hub id or a path.",
            {"base_model": base_model},
        ),
        _section(
            "LoRA adapters on the attention and MLP projections (the names Llama, Qwen and Mistral use).",
            {"lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": LORA_TARGETS}},
        ),
        _section(
            "A short run that fits a CPU or one GPU; raise max_steps for more data or a bigger model.\n"
            "max_seq_len caps prompt + response tokens (the dataset's cleaning.token_bounds uses the same cap).",
            {
                "train": {
                    "max_steps": 200,
                    "batch_size": 8,
                    "grad_accum": 1,
                    "learning_rate": rate,
                    "warmup_ratio": 0.05,
                    "max_seq_len": MAX_SEQ_LEN,
                    "seed": 0,
                    "log_every": 20,
                    "checkpoint_every": 50,
                }
            },
            {"learning_rate": why},
        ),
        _section(
            "Evaluation on the held-out test split (there is no golden set) and the generic adversarial suite.",
            {
                "eval": {
                    "splits": ["test"],
                    "max_examples": 64,
                    "batch_size": 16,
                    "max_new_tokens": max_new,
                    "safety_suite": SAFETY_SUITE,
                }
            },
            {
                "max_new_tokens": f"covers 95% of the sampled responses at ~{CHARS_PER_TOKEN} characters a token"
            },
        ),
        _section(
            "The gate every candidate must pass: no worse than the base model on test ROUGE-L, at most 0.02\n"
            "below the champion (once there is one), and the safety suite's pass rate at the floor or above.",
            {
                "gate": {
                    "rules": {
                        "test.rougeL": {"min_improvement_over_base": 0.0, "max_regression_vs_champion": 0.02}
                    },
                    "safety_floor": 0.75,
                }
            },
        ),
        _section(
            "Where passing candidates are registered; a reviewer approves the first champion\n"
            "(`tuneops promote --model ... --version ... --by <you>`).",
            {"registry": {"model_name": model_name_for(name), "auto_approve": False}},
        ),
        _section(
            "Where training runs: local (a subprocess) or kubernetes.", {"compute": {"backend": "local"}}
        ),
        _section(
            "The quantized serving variant is gated on the metrics this recipe evaluates.",
            {"compression": {"metrics": ["test.rougeL"]}},
        ),
    ]
    return "\n".join(sections)


def project_yaml(name: str, proposal: Proposal, sample: str) -> str:
    """The commented project file binding the dataset config, the recipe, the model name and the safety suite."""
    return "\n".join(
        [
            f"# Project '{name}', written by `tuneops init-dataset`. Paths are relative to this file.\n",
            _section(
                "Found by this name in TUNEOPS_PROJECT_DIRS and <TUNEOPS_HOME>/configs/projects.",
                {"name": name, "description": f"Onboarded from {sample} ({proposal.shape})."},
            ),
            _section(
                "The dataset config and the recipe; model_name and safety_suite override the recipe's.",
                {
                    "dataset": f"../datasets/{name}.yaml",
                    "recipe": f"../recipes/{name}.yaml",
                    "model_name": model_name_for(name),
                    "safety_suite": SAFETY_SUITE,
                },
            ),
            _section("A monitoring config (name or path), once the model is served.", {"monitoring": None}),
        ]
    )


def target_files(name: str, out_dir: Path) -> dict[str, Path]:
    """Where ``init_dataset`` writes project ``name`` under ``out_dir``."""
    return {
        "project": out_dir / "projects" / f"{name}.yaml",
        "dataset": out_dir / "datasets" / f"{name}.yaml",
        "recipe": out_dir / "recipes" / f"{name}.yaml",
    }


def _verify(name: str, projects: Path) -> None:
    """Load project ``name`` from ``projects`` and everything it names with the config loaders;
    raises OnboardingError if any fails."""
    try:
        project = load_project(name, [projects])
        load_dataset_config(project.dataset)
        recipe = load_recipe(project.recipe, project.recipe_overrides())
        load_safety_suite(project.safety_suite or recipe.eval.safety_suite)
    except ConfigError as exc:
        raise OnboardingError(
            f"the configs proposed for this sample do not load ({exc}); nothing was written. Map the "
            "columns yourself with --input/--response/--instruction/--messages/--explode"
        ) from None


def init_dataset(
    sample: Path,
    name: str,
    out_dir: Path,
    base_model: str = DEFAULT_BASE_MODEL,
    force: bool = False,
    overrides: Mapping[str, str] | None = None,
    limit: int = SAMPLE_ROWS,
    project_dirs: Sequence[str | Path] = (),
) -> Onboarded:
    """Propose a mapping for ``sample`` and write project ``name`` under ``out_dir`` (see ``target_files``).

    The files are written to a staging folder, loaded with the config loaders, and only then moved
    into place. Raises OnboardingError for a bad name, existing files (unless ``force``), a sample
    that cannot be read or mapped, or configs that do not load; nothing is written then.
    """
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise OnboardingError(
            f"--name {excerpt(name)} is not a project name: use lower-case letters, digits, '_' and '-', "
            "starting with a letter or digit (e.g. headlines)"
        )
    out_dir = Path(out_dir).expanduser().absolute()
    targets = target_files(name, out_dir)
    shadow = _same_name_elsewhere(name, targets["project"], project_dirs)
    if shadow:
        raise OnboardingError(
            f"a project named '{name}' already exists at {shadow}, and the pipeline would find that one; "
            "choose another --name"
        )
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not force:
        raise OnboardingError(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; pass --force to "
            "overwrite, or choose another --name"
        )
    sample = Path(sample)
    records = read_sample(sample, limit)
    proposal = propose_columns(records, overrides, str(sample))
    profile = profile_sample(canonical_rows(records, proposal))
    texts = {
        "project": project_yaml(name, proposal, sample.name),
        "dataset": dataset_yaml(name, proposal, profile, base_model, sample.name, _is_chat_model(base_model)),
        "recipe": recipe_yaml(name, base_model, profile),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".init-dataset-", dir=out_dir))
    try:
        staged = target_files(name, staging)
        for kind, text in texts.items():
            staged[kind].parent.mkdir(parents=True, exist_ok=True)
            staged[kind].write_text(text, encoding="utf-8")
        _verify(name, staged["project"].parent)
        for kind, path in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged[kind], path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    load_project(name, [out_dir / "projects"])  # found by name, where the pipeline looks
    return Onboarded(name, sample, len(records), proposal, profile, targets)


def _is_chat_model(base_model: str) -> bool:
    from tuneops.core.settings import load_settings
    from tuneops.core.store import ArtifactStore
    from tuneops.models.base_model import is_chat_model

    return is_chat_model(base_model, ArtifactStore.from_settings(load_settings()))


def _same_name_elsewhere(name: str, target: Path, project_dirs: Sequence[str | Path]) -> Path | None:
    """The file of another project ``name`` in the deployment's project folders, if there is one."""
    try:
        found = project_path(name, project_dirs)
    except ConfigError:
        return None
    return None if found.resolve() == target.resolve() else found


# --- telling the user -------------------------------------------------------------------


def _notes(result: Onboarded) -> list[str]:
    profile, notes = result.profile, list(result.proposal.notes)
    for marker, count in sorted(profile.markers.items()):
        notes.append(
            f"{count} of {profile.rows} responses end in {marker}: build-prompts strips it (cleaning.end_markers)"
        )
    if profile.empty_responses:
        notes.append(
            f"{profile.empty_responses} of {profile.rows} sampled responses are empty: validation refuses a "
            "batch holding any (rule not_empty); drop them, or add not_empty to validation.warn_only"
        )
    if profile.empty_prompts:
        notes.append(
            f"{profile.empty_prompts} of {profile.rows} sampled prompts are empty: validation refuses a batch "
            "holding any (rule not_empty); drop them, or map an instruction column with --instruction COL"
        )
    if profile.duplicate_rate:
        notes.append(
            f"{profile.duplicate_rate:.1%} of sampled rows repeat an earlier prompt: validation allows that "
            "(max_duplicate_rate), and build-prompts drops exact and near duplicates"
        )
    too_long = sum(n / CHARS_PER_TOKEN > MAX_SEQ_LEN for n in profile.example_chars)
    if too_long > 0.05 * profile.rows:
        notes.append(
            f"about {too_long} of {profile.rows} examples may be over {MAX_SEQ_LEN} tokens and be dropped: "
            "raise train.max_seq_len in the recipe and cleaning.token_bounds in the dataset config together"
        )
    return notes


def report(result: Onboarded, settings: Settings) -> str:
    """What ``tuneops init-dataset`` prints: the proposed mapping, the files written and the next commands."""
    proposal = result.proposal
    lines = [
        f"Proposed mapping for {result.sample} (shape: {proposal.shape}; records read: {result.records}, "
        f"rows: {result.profile.rows}):",
        *(f"  {role:<12} <- {raw}" for role, raw in proposal.columns.items()),
    ]
    if proposal.explode:
        lines.append(f"  {'explode':<12}    {proposal.explode}")
    if "id" not in proposal.columns:
        lines.append(f"  {'id':<12}    (generated from each row's content)")
    lines += ["", "Notes:", *(f"  - {note}" for note in _notes(result)), "", "Wrote (each file loads):"]
    lines += [f"  {kind:<8} {path}" for kind, path in result.files.items()]
    try:
        batch = confine(str(result.sample), settings.landing_roots)
        land = []
    except OutsideLandingRoots:
        folder = settings.home / "landing" / result.name
        batch = str(folder / result.sample.name)
        land = [
            f"mkdir -p {folder} && cp {result.sample.absolute()} {folder}/   # batches are read from a landing root"
        ]
    projects = result.files["project"].parent
    known = {Path(d).expanduser().resolve() for d in settings.project_dirs}
    export = (
        []
        if projects.resolve() in known
        else [f"export TUNEOPS_PROJECT_DIRS={projects}${{TUNEOPS_PROJECT_DIRS:+,$TUNEOPS_PROJECT_DIRS}}"]
    )
    lines += [
        "",
        "Edit what you want different in those files; then:",
        *(f"  {command}" for command in export + land),
        f"  tuneops validate --batch {batch} --project {result.name}",
        f"  tuneops build-prompts --validated <uri printed by validate> --project {result.name}",
        f"  tuneops finetune --dataset-uri <uri printed by build-prompts> --project {result.name}",
        f"  tuneops promote --model {model_name_for(result.name)} --version <version> --by <you>"
        "   # a reviewer approves the first champion",
    ]
    return "\n".join(lines)
