import json
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TEST_DATASET
from tuneops.config import ConfigError, load_dataset_config, load_template
from tuneops.contracts import DatasetManifest
from tuneops.core.hashing import hash_json
from tuneops.core.pii import find_pii
from tuneops.core.sample_data import generate_tickets
from tuneops.core.store import ArtifactStore
from tuneops.core.templates import PromptTemplate, TemplateError, check_template, render_prompt
from tuneops.data.prompts import (
    assign_split,
    build_prompt_dataset,
    encode_example,
    load_prompt_dataset,
    normalise_text,
    select_batches,
    strip_end_markers,
)
from tuneops.data.validation import validate_batch

# The tests' config (the tiny model's tokenizer) without its golden file; the golden test brings its own.
CONFIG = load_dataset_config(TEST_DATASET).model_copy(update={"golden": None})
TEMPLATE = load_template(CONFIG.template)
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def tokenizers_dir(tmp_path_factory):
    """The builtin tokenizer, built once and copied into each test's store."""
    from tuneops.models.base_model import resolve_tokenizer

    store = ArtifactStore(str(tmp_path_factory.mktemp("tok")))
    resolve_tokenizer(CONFIG.tokenizer, store)
    return Path(store.uri("tokenizers"))


@pytest.fixture
def store(tmp_path, tokenizers_dir):
    root = tmp_path / "artifacts"
    shutil.copytree(tokenizers_dir, root / "tokenizers")
    return ArtifactStore(str(root))


def tickets(n: int, seed: int) -> list[dict]:
    """Canonical records (the validated layout) from the sample generator."""
    return [
        {
            "id": t["ticket_id"],
            "input": t["body"],
            "response": t["triage"],
            "label": t["channel"],
            "subject": t["subject"],
        }
        for t in generate_tickets(n, seed=seed)
    ]


def publish_batch(
    store: ArtifactStore, records: list[dict], validated_at: datetime = NOW, dataset: str = "support_tickets"
) -> str:
    """Publish records as an accepted batch, in the layout ``validate_batch`` writes."""
    batch_hash = hash_json(records)[:16]
    with tempfile.TemporaryDirectory() as tmp:
        pd.DataFrame(records).to_parquet(Path(tmp) / "data.parquet", index=False)
        meta = {
            "dataset": dataset,
            "batch_hash": batch_hash,
            "rows": len(records),
            "validated_at": validated_at.isoformat(),
        }
        (Path(tmp) / "meta.json").write_text(json.dumps(meta))
        store.publish_dir(Path(tmp), f"validated/{dataset}/{batch_hash}")
    return f"validated/{dataset}/{batch_hash}"


def build(store, keys, config=CONFIG, template=TEMPLATE):
    return build_prompt_dataset(keys, config, template, store, cache_dir=Path(store.uri("")) / ".cache")


def splits_of(store, result) -> dict[str, dict[str, dict]]:
    ds = load_prompt_dataset(store.fetch_dir(result["key"]))
    return {name: {row["id"]: row for row in ds[name]} for name in ds}


def manifest_of(store, result) -> dict:
    return json.loads((store.fetch_dir(result["key"]) / "manifest.json").read_text())


def all_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_validated_batch_builds_a_versioned_dataset_end_to_end(tmp_path, store):
    batch = tmp_path / "b.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in generate_tickets(120, seed=7)))
    validated = validate_batch(str(batch), CONFIG, store, tmp_path / "cache", [str(tmp_path)])
    result = build(store, [validated["key"]])
    rows = splits_of(store, result)
    assert sum(result["counts"].values()) + sum(result["dropped"].values()) == 120
    row = next(iter(rows["train"].values()))
    assert row["prompt"].startswith("### System\n") and row["prompt"].endswith("### Triage\n")
    source = pd.read_parquet(store.fetch_dir(validated["key"]) / "data.parquet").set_index("id")
    assert row["response"] == source.loc[row["id"], "response"]
    assert row["source_batch"] == validated["batch_hash"]


def test_identical_rerun_gives_the_same_version_and_writes_no_file(store):
    keys = [publish_batch(store, tickets(150, seed=1))]
    first = build(store, keys)
    files = all_files(Path(store.uri("")))
    again = build(store, keys)
    assert again["version"] == first["version"] and again["reused"] is True and first["reused"] is False
    assert all_files(Path(store.uri(""))) == files
    assert not list(Path(store.uri(".staging")).glob("*"))


def test_one_changed_record_or_template_changes_the_version(store):
    records = tickets(150, seed=1)
    first = build(store, [publish_batch(store, records)])
    changed = [dict(r) for r in records]
    changed[77]["input"] = changed[77]["input"].replace("Hi", "Hello")
    assert build(store, [publish_batch(store, changed)])["version"] != first["version"]
    other_template = TEMPLATE.model_copy(update={"system": "Different system prompt."})
    assert (
        build(store, [publish_batch(store, records)], template=other_template)["version"] != first["version"]
    )


def test_pii_in_inputs_never_reaches_any_split(store):
    records = tickets(150, seed=2)
    planted = {
        "email": "dana.smith@example.com",
        "phone": "+1 415-555-0199",
        "card": "4111 1111 1111 1111",
        "ip": "192.168.13.77",
    }
    for i, (kind, value) in enumerate(planted.items()):
        for r in records[i * 10 : i * 10 + 10]:
            r["input"] += f" My {kind} is {value}."
    records[50]["subject"] = "Call me at +44 20 7946 0958"
    result = build(store, [publish_batch(store, records)])
    rows = [row for split in splits_of(store, result).values() for row in split.values()]
    text = "\n".join(row["prompt"] + row["response"] for row in rows)
    assert not any(value in text for value in planted.values()) and "7946" not in text
    assert not any(find_pii(row["prompt"] + "\n" + row["response"]) for row in rows)
    redacted = manifest_of(store, result)["pii_redacted"]
    assert (
        redacted["card"] >= 10
        and redacted["ip"] >= 10
        and redacted["phone"] >= 11
        and redacted["email"] >= 10
    )
    assert "<CARD>" in text and "<IP>" in text


def test_pii_kinds_are_configurable(store):
    records = tickets(100, seed=2)
    records[0]["input"] += " Server 10.1.2.3 is down, mail ops@example.com."
    config = CONFIG.model_copy(
        update={"cleaning": CONFIG.cleaning.model_copy(update={"redact_pii": ["email"]})}
    )
    rows = splits_of(store, build(store, [publish_batch(store, records)], config=config))
    row = next(row for split in rows.values() for row in split.values() if row["id"] == records[0]["id"])
    assert "10.1.2.3" in row["prompt"] and "<EMAIL>" in row["prompt"]


def test_normalisation():
    assert (
        normalise_text("  Ｈｉ,  the ﬁle\t is \u00a0 broken.  \n  next   line ")
        == "Hi, the file is broken.\nnext line"
    )


def test_exact_and_near_duplicates_are_dropped_and_counted(store):
    records = tickets(150, seed=3)
    records.append({**records[10], "id": "Z-exact"})
    records.append({**records[11], "id": "Z-near", "input": records[11]["input"].replace(".", "!", 1)})
    records.append({**records[12], "id": records[12]["id"]})  # a repeated id
    result = build(store, [publish_batch(store, records)])
    kept = {i for split in splits_of(store, result).values() for i in split}
    assert "Z-exact" not in kept and "Z-near" not in kept
    assert records[10]["id"] in kept and records[11]["id"] in kept
    dropped = result["dropped"]
    assert dropped["duplicate_id"] == 1 and dropped["duplicate_exact"] + dropped["contamination"] >= 1
    assert sum(result["counts"].values()) + sum(dropped.values()) == len(records)


def _train_id_like(prefix: str) -> str:
    return next(f"{prefix}-{i}" for i in range(1000) if assign_split(f"{prefix}-{i}", 0.1, 0.1) == "train")


def test_exact_duplicates_compare_the_rendered_prompt_and_response(store):
    config = CONFIG.model_copy(
        update={"columns": CONFIG.columns.model_copy(update={"instruction": "instruction"})}
    )
    # Instruction-only rows: the near-duplicate field (input) is empty in all of them.
    asks = [
        {
            "id": _train_id_like(f"ASK{i}"),
            "instruction": f"List {i + 2} ways to speed up a slow {topic} without new hardware.",
            "input": "",
            "response": f'{{"answer": "{topic} tips, {i + 2} of them"}}',
            "label": "web",
            "subject": "",
        }
        for i, topic in enumerate(["laptop", "database", "website", "build", "network", "phone"])
    ]
    copy = {**asks[0], "id": _train_id_like("ASKCOPY")}
    records = tickets(150, seed=3)
    twin = next(r for r in records if assign_split(r["id"], 0.1, 0.1) == "train")
    other_answer = {**twin, "id": _train_id_like("Z-ANSWER"), "response": '{"category": "other"}'}
    batch = publish_batch(store, [*records, *asks, copy, other_answer])
    result = build(store, [batch], config=config, template=load_template("generic_v1"))
    train = splits_of(store, result)["train"]
    assert {a["id"] for a in asks} <= set(train) and copy["id"] not in train and twin["id"] in train
    assert train[asks[1]["id"]]["prompt"].count("### Instruction\n") == 1
    assert "### Input" not in train[asks[1]["id"]]["prompt"]
    # Same input, another response: not an exact copy, still a near one on `fields: [input]`.
    assert other_answer["id"] not in train
    assert result["dropped"]["duplicate_exact"] >= 1 and result["dropped"]["near_duplicate"] >= 1


def test_near_duplicate_of_a_test_row_in_a_new_batch_is_removed_from_train(store):
    old = tickets(200, seed=4)
    first = build(store, [publish_batch(store, old, NOW - timedelta(days=1))])
    test_row = next(iter(splits_of(store, first)["test"]))
    source = next(r for r in old if r["id"] == test_row)
    leak = {
        **source,
        "id": _train_id_like("LEAK"),
        "input": source["input"].replace("Hi, this is", "Hello, this is"),
    }
    copy = {**source, "id": _train_id_like("COPY")}
    new_keys = [publish_batch(store, [leak, copy, *tickets(50, seed=5)], NOW)]
    second = build(store, select_batches(new_keys, CONFIG, store))
    rows = splits_of(store, second)
    assert test_row in rows["test"]
    assert leak["id"] not in rows["train"] and copy["id"] not in rows["train"]
    assert second["dropped"]["contamination"] >= first["dropped"]["contamination"] + 2


def test_adding_a_batch_keeps_old_rows_in_their_splits(store):
    first_key = publish_batch(store, tickets(200, seed=6), NOW - timedelta(days=2))
    first = splits_of(store, build(store, [first_key]))
    second_key = publish_batch(store, tickets(200, seed=8), NOW)
    keys = select_batches([second_key], CONFIG, store)
    assert set(keys) == {first_key, second_key}
    second = splits_of(store, build(store, keys))
    for split, rows in first.items():
        for row_id in rows:
            assert row_id in second[split], f"{row_id} left {split}"
    assert sum(len(r) for r in second.values()) > sum(len(r) for r in first.values()) + 150


def test_window_accumulation_leaves_out_old_batches_and_later_ones(store):
    old = publish_batch(store, tickets(50, seed=9), NOW - timedelta(days=40))
    recent = publish_batch(store, tickets(50, seed=10), NOW - timedelta(days=3))
    current = publish_batch(store, tickets(50, seed=11), NOW)
    later = publish_batch(store, tickets(50, seed=12), NOW + timedelta(days=1))
    windowed = CONFIG.model_copy(
        update={"accumulate": CONFIG.accumulate.model_copy(update={"mode": "window", "window_days": 30})}
    )
    assert set(select_batches([current], windowed, store)) == {recent, current}
    assert set(select_batches([current], CONFIG, store)) == {old, recent, current}
    assert later in select_batches([later], CONFIG, store)


def test_token_bounds_drop_rows_measured_with_the_real_tokenizer(store):
    from transformers import AutoTokenizer

    from tuneops.models.base_model import resolve_tokenizer

    records = tickets(150, seed=13)
    records[5]["input"] += " Extra detail." * 40
    config = CONFIG.model_copy(
        update={"cleaning": CONFIG.cleaning.model_copy(update={"token_bounds": (10, 150)})}
    )
    result = build(store, [publish_batch(store, records)], config=config)
    tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer(CONFIG.tokenizer, store))
    ds = load_prompt_dataset(store.fetch_dir(result["key"]))
    lengths = [
        sum(map(len, encode_example(tokenizer, r["prompt"], r["response"]))) for s in ds for r in ds[s]
    ]
    assert max(lengths) <= 150
    kept = {r["id"] for s in ds for r in ds[s]}
    assert records[5]["id"] not in kept and result["dropped"]["too_many_tokens"] >= 1
    stats = manifest_of(store, result)["token_lengths"]["train"]
    assert stats["max"] <= 150 and stats["rows"] == result["counts"]["train"]


def test_golden_set_is_its_own_split_and_never_trained_on(store, tmp_path):
    golden_rows = generate_tickets(12, seed=99)
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps(r) + "\n" for r in golden_rows))
    config = CONFIG.model_copy(update={"golden": str(golden)})
    records = tickets(150, seed=14)
    leaked = {
        "id": _train_id_like("GOLD"),
        "input": golden_rows[0]["body"],
        "response": golden_rows[0]["triage"],
        "label": "email",
        "subject": "x",
    }
    first = build(store, [publish_batch(store, [*records, leaked])], config=config)
    rows = splits_of(store, first)
    assert set(rows["golden"]) == {r["ticket_id"] for r in golden_rows}
    assert leaked["id"] not in rows["train"] and first["dropped"]["contamination"] >= 1
    manifest = manifest_of(store, first)
    assert manifest["golden"]["rows"] == 12 and manifest["counts"]["golden"] == 12
    golden.write_text("".join(json.dumps(r) + "\n" for r in golden_rows[:11]))
    assert (
        build(store, [publish_batch(store, [*records, leaked])], config=config)["version"] != first["version"]
    )


def test_chat_format_uses_the_tokenizers_chat_template_and_marks_the_reply(store):
    from transformers import AutoTokenizer

    from tuneops.models.base_model import resolve_tokenizer

    chat = load_template("triage_chat_v1")
    assert chat.format == "chat"
    result = build(store, [publish_batch(store, tickets(120, seed=15))], template=chat)
    row = next(iter(splits_of(store, result)["train"].values()))
    assert row["prompt"].startswith("<s><|system|>\n") and row["prompt"].endswith("<|assistant|>\n")
    assert row["response"].endswith("</s>") and json.loads(row["response"].removesuffix("</s>"))
    tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer(CONFIG.tokenizer, store))
    prompt_ids, response_ids = encode_example(
        tokenizer, row["prompt"], row["response"], add_special_tokens=False
    )
    assert prompt_ids.count(tokenizer.bos_token_id) == 1 and response_ids.count(tokenizer.eos_token_id) == 1
    assert response_ids[-1] == tokenizer.eos_token_id
    record = {"subject": "Charged twice", "input": "I was charged twice."}
    assert render_prompt(chat, record, tokenizer).endswith("<|assistant|>\n")
    assert manifest_of(store, result)["add_special_tokens"] is False


def test_chat_format_without_a_chat_template_fails_before_any_row(store):
    chat = load_template("triage_chat_v1")
    with pytest.raises(TemplateError, match="format 'chat'.*no tokenizer"):
        build(
            store,
            [publish_batch(store, tickets(30, seed=16))],
            config=CONFIG.model_copy(update={"tokenizer": None}),
            template=chat,
        )
    assert not store.list_keys("datasets/support_tickets")


def test_template_with_unknown_field_fails_before_rendering():
    bad = PromptTemplate(id="t", prompt="{{ input }} {{ customer_tier }}")
    with pytest.raises(TemplateError, match=r"\['customer_tier'\].*available fields"):
        check_template(bad, {"id", "input", "response"})
    with pytest.raises(TemplateError, match="syntax error"):
        check_template(PromptTemplate(id="t", prompt="{{ input "), {"input"})


def test_split_is_a_stable_function_of_the_record_id():
    ids = [f"T{i}" for i in range(2000)]
    splits = [assign_split(i, 0.1, 0.1) for i in ids]
    assert splits == [assign_split(i, 0.1, 0.1) for i in ids]
    assert 150 < splits.count("test") < 250 and 150 < splits.count("validation") < 250


KILLER = """
import os, shutil, signal, sys
from pathlib import Path
from tuneops.config import load_dataset_config, load_template
from tuneops.data.prompts import build_prompt_dataset
from tuneops.core.store import ArtifactStore

copytree = shutil.copytree
copied = []

def copy_then_die(src, dst, **kwargs):
    shutil.copy2(src, dst)
    copied.append(dst)
    if len(copied) == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)  # mid-publish: some files are in, some are not

def dying_copytree(src, dst, symlinks=False, ignore=None, copy_function=None, *rest, **kwargs):
    return copytree(src, dst, symlinks, ignore, copy_then_die, *rest, **kwargs)

shutil.copytree = dying_copytree
config = load_dataset_config(sys.argv[4])
build_prompt_dataset([sys.argv[2]], config, load_template(config.template), ArtifactStore(sys.argv[1]), Path(sys.argv[1]) / ".cache")
"""


def test_a_kill_during_the_write_leaves_no_visible_version(store):
    key = publish_batch(store, tickets(150, seed=17))
    root = store.uri("")
    for kill_after in (1, 4):
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, root, key, str(kill_after), str(TEST_DATASET)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == -9, proc.stderr[-2000:]
        assert store.list_keys("datasets/support_tickets") == []
        assert list(Path(root, ".staging").glob("*")), "the kill should have left a partial staging folder"
    result = build(store, [key])
    assert store.list_keys("datasets/support_tickets") == [result["key"]]
    assert sum(len(s) for s in splits_of(store, result).values()) == sum(result["counts"].values())


def test_shipped_golden_file_is_found_next_to_its_config(tmp_path):
    from tuneops.config import ConfigError
    from tuneops.data.prompts import read_golden

    shipped = load_dataset_config("support_tickets")
    golden, digest = read_golden(shipped, tmp_path)
    assert len(golden) == 32 and set(golden.columns) >= {"id", "input", "response"} and len(digest) == 64
    moved = tmp_path / "tickets.yaml"
    moved.write_text(Path(shipped.golden).parents[1].joinpath("datasets/support_tickets.yaml").read_text())
    with pytest.raises(ConfigError, match="golden file ../golden/support_tickets.jsonl not found"):
        load_dataset_config(moved)


MARKERS = ["<|endoftext|>", "</s>", "<eos>", "<|im_end|>", "<|eot_id|>", "<|end|>"]


def test_strip_end_markers_removes_only_trailing_markers():
    assert strip_end_markers("answer</s> <|endoftext|>\n", MARKERS) == ("answer", ["<|endoftext|>", "</s>"])
    assert strip_end_markers("a </s> in the middle", MARKERS) == ("a </s> in the middle", [])
    assert strip_end_markers("<|end|>x", MARKERS) == ("<|end|>x", [])
    assert strip_end_markers("answer</s>", []) == ("answer</s>", [])


def test_end_markers_are_stripped_from_every_split_and_counted(store, tmp_path):
    golden_rows = generate_tickets(12, seed=98)
    golden_rows[0]["triage"] += "</s>"
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps(r) + "\n" for r in golden_rows))
    records = tickets(150, seed=21)
    records[0]["response"] += "<|endoftext|>"
    records[1]["response"] += "</s> <|endoftext|>\n"
    records[2]["response"] = "<|im_end|> " + records[2]["response"]  # not at the end: stays
    config = CONFIG.model_copy(update={"golden": str(golden)})
    result = build(store, [publish_batch(store, records)], config=config)
    rows = {i: row for split in splits_of(store, result).values() for i, row in split.items()}
    assert rows[golden_rows[0]["ticket_id"]]["response"] == golden_rows[0]["triage"].removesuffix("</s>")
    for record in records[:2]:
        assert json.loads(rows[record["id"]]["response"])
    assert rows[records[2]["id"]]["response"].startswith("<|im_end|> ")
    assert manifest_of(store, result)["markers_stripped"] == {
        "<|endoftext|>": 2,
        "</s>": 2,
        "<eos>": 0,
        "<|im_end|>": 0,
        "<|eot_id|>": 0,
        "<|end|>": 0,
    }
    kept_as_is = CONFIG.model_copy(
        update={"cleaning": CONFIG.cleaning.model_copy(update={"end_markers": []})}
    )
    plain = build(store, [publish_batch(store, records)], config=kept_as_is)
    assert plain["version"] != result["version"]
    rows = {i: row for split in splits_of(store, plain).values() for i, row in split.items()}
    assert rows[records[0]["id"]]["response"].endswith("<|endoftext|>")
    assert manifest_of(store, plain)["markers_stripped"] == {}


def test_a_response_that_ended_in_a_marker_ends_in_exactly_one_eos_when_encoded(store):
    from transformers import AutoTokenizer

    from tuneops.models.base_model import resolve_tokenizer

    records = tickets(150, seed=22)
    marked = next(r for r in records if assign_split(r["id"], 0.1, 0.1) == "train")
    clean = marked["response"]
    marked["response"] = clean + "<|endoftext|>"
    result = build(store, [publish_batch(store, records)])
    row = splits_of(store, result)["train"][marked["id"]]
    tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer(CONFIG.tokenizer, store))
    _, response_ids = encode_example(tokenizer, row["prompt"], row["response"])
    eos = tokenizer.eos_token_id
    assert response_ids[-1] == eos and response_ids.count(eos) == 1
    assert response_ids == [*tokenizer(clean, add_special_tokens=False)["input_ids"], eos]
    marker_ids = tokenizer("<|endoftext|>", add_special_tokens=False)["input_ids"]
    assert not {marker_ids[0], marker_ids[1], marker_ids[-1]} & set(response_ids)  # "<", "|", ">"


def test_a_manifest_from_before_marker_stripping_still_loads(store):
    result = build(store, [publish_batch(store, tickets(120, seed=23))])
    older = manifest_of(store, result)
    del older["markers_stripped"]
    assert DatasetManifest.model_validate(older).markers_stripped == {}


def test_generic_template_fits_any_record_shape():
    generic = load_template("generic_v1")
    assert generic.format == "instruction" and generic.output is None and generic.system
    check_template(generic, {"id", "input", "response"})
    check_template(generic, {"id", "input", "response", "instruction"})
    both = render_prompt(generic, {"instruction": "Summarise.", "input": "A long text."})
    assert (
        both
        == f"### System\n{generic.system}\n### Instruction\nSummarise.\n### Input\nA long text.\n### Response\n"
    )
    assert render_prompt(generic, {"instruction": "Name a colour.", "input": ""}) == (
        f"### System\n{generic.system}\n### Instruction\nName a colour.\n### Response\n"
    )
    assert (
        render_prompt(generic, {"input": "Hello"})
        == f"### System\n{generic.system}\n### Input\nHello\n### Response\n"
    )


def _config_file(folder: Path, template_line: str) -> Path:
    """The tests' dataset config with its template line replaced and no golden file."""
    text = TEST_DATASET.read_text().replace("template: triage_v1", template_line)
    path = folder / "tickets.yaml"
    path.write_text("\n".join(line for line in text.splitlines() if not line.startswith("golden:")))
    return path


def test_a_config_without_a_template_uses_generic_v1(tmp_path):
    config = load_dataset_config(_config_file(tmp_path, ""))
    assert config.template == "generic_v1" and load_template(config.template).id == "generic_v1"


def test_a_relative_template_path_is_found_next_to_its_config(tmp_path):
    (tmp_path / "templates").mkdir()
    copy = tmp_path / "templates" / "triage.yaml"
    copy.write_text(load_template("triage_v1").model_dump_json())  # JSON is YAML
    config = load_dataset_config(_config_file(tmp_path, "template: templates/triage.yaml"))
    assert config.template == str(copy.resolve()) and load_template(config.template).id == "triage_v1"
    assert (
        load_dataset_config(_config_file(tmp_path, "template: triage_chat_v1")).template == "triage_chat_v1"
    )
    moved = _config_file(tmp_path, "template: templates/missing.yaml")
    looked_for = tmp_path / "templates" / "missing.yaml"
    with pytest.raises(
        ConfigError,
        match=re.escape(f"{moved}: template file templates/missing.yaml not found (looked for {looked_for})"),
    ):
        load_dataset_config(moved)


def test_the_same_template_by_another_path_gives_the_same_version(store, tmp_path):
    copy = tmp_path / "triage.yaml"
    copy.write_text(TEMPLATE.model_dump_json())
    keys = [publish_batch(store, tickets(120, seed=24))]
    by_name = build(store, keys)
    by_path = build(
        store, keys, config=CONFIG.model_copy(update={"template": str(copy)}), template=load_template(copy)
    )
    assert by_path["version"] == by_name["version"] and by_path["reused"] is True


def test_a_blank_end_marker_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="empty or blank marker"):
        CONFIG.cleaning.model_validate({"end_markers": ["</s>", " "]})
