"""The data contract: every malformed input gets a specific error, and nothing is published."""

import bz2
import gzip
import hashlib
import io
import json
import lzma
import zipfile

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tuneops.config import ColumnMapping, ConfigError, load_dataset_config
from tuneops.core.sample_data import generate_tickets
from tuneops.core.store import ArtifactStore
from tuneops.data.validation import BatchRejected, failures, run_expectations, validate_batch


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture(scope="module")
def config():
    # No tokenizer here: building the tiny model's tokenizer is covered by the integration tier.
    return load_dataset_config("support_tickets").model_copy(update={"tokenizer": None})


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _validate(path, config, store, tmp_path):
    return validate_batch(str(path), config, store, tmp_path / "cache", [str(tmp_path)])


def _nothing_published(store):
    return store.list_keys("validated/support_tickets") == []


def test_good_batch_is_published_with_report_eda_and_reused(tmp_path, store, config):
    batch = _jsonl(tmp_path / "b.jsonl", generate_tickets(60, seed=2))
    result = _validate(batch, config, store, tmp_path)
    assert result["rows"] == 60 and result["reused"] is False
    folder = store.fetch_dir(result["key"])
    assert set(pd.read_parquet(folder / "data.parquet").columns) == {
        "id",
        "input",
        "response",
        "label",
        "subject",
    }
    assert json.loads((folder / "validation.json").read_text())["success"] is True
    assert (folder / "eda" / "report.html").is_file() and (folder / "summary.md").is_file()
    assert _validate(batch, config, store, tmp_path)["reused"] is True
    assert batch.exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_batches(tmp_path, store, config, fmt):
    frame = pd.DataFrame(generate_tickets(40, seed=5))
    path = tmp_path / f"b.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    assert _validate(path, config, store, tmp_path)["rows"] == 40


def test_failed_critical_expectations_are_all_named_and_the_batch_is_quarantined(tmp_path, store, config):
    records = generate_tickets(60, seed=2)
    records[0]["body"] = None
    records[1]["triage"] = "not json at all"
    records[3]["ticket_id"] = records[2]["ticket_id"]
    records[4]["channel"] = "fax"
    records[5]["body"] = "Hi, this is Dana. The app crashes Ã© every time."
    batch = _jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(BatchRejected) as err:
        _validate(batch, config, store, tmp_path)
    msg = str(err.value)
    for rule in (
        "not_null on 'input'",
        "response_is_json on 'response'",
        "unique_id on 'id'",
        "allowed_labels on 'label'",
        "encoding on 'input'",
    ):
        assert rule in msg, rule
    assert "threshold" in msg and "observed" in msg and "'fax'" in msg
    assert _nothing_published(store)
    (quarantined,) = store.list_keys("quarantine/support_tickets")
    folder = store.fetch_dir(quarantined)
    assert json.loads((folder / "validation.json").read_text())["success"] is False
    assert sorted(p.name for p in folder.iterdir()) == [
        "_SUCCESS",
        "files",
        "files.json",
        "summary.md",
        "validation.json",
    ]
    assert (folder / "files" / "000-bad.jsonl").read_bytes() and not batch.exists()


def test_checkpoint_reports_a_missing_column_without_raising_and_the_step_fails(tmp_path, store, config):
    frame = pd.DataFrame({"id": ["a", "b"], "input": ["x" * 20, "y" * 20], "label": ["web", "web"]})
    result = run_expectations(frame, config)  # no 'response' column at all
    assert result["success"] is False
    assert any(f["column"] == "response" and f["severity"] == "critical" for f in failures(result))


def test_warnings_pass_and_are_recorded(tmp_path, store, config):
    records = generate_tickets(40, seed=3)
    for r in records[:8]:
        r["body"] += " Mail me at someone@example.com."
    result = _validate(_jsonl(tmp_path / "pii.jsonl", records), config, store, tmp_path)
    assert any("max_pii_rate" in w and "[warning]" in w for w in result["warnings"])
    strict = config.model_copy(update={"validation": config.validation.model_copy(update={"warn_only": []})})
    with pytest.raises(BatchRejected, match=r"\[critical\] max_pii_rate"):
        _validate(_jsonl(tmp_path / "pii2.jsonl", records), strict, store, tmp_path)


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _good_parquet_bytes(tmp_path):
    path = tmp_path / "ok.parquet"
    pd.DataFrame(generate_tickets(30, seed=1)).to_parquet(path, index=False)
    return path.read_bytes()


MALFORMED = {
    "empty file": (lambda t: _write(t, "b.jsonl", b""), r"is empty"),
    "zero rows": (
        lambda t: _parquet(t, pa.table({c: pa.array([], pa.string()) for c in TICKET_COLUMNS})),
        r"no rows after mapping",
    ),
    "header-only CSV": (
        lambda t: _write(t, "b.csv", b"ticket_id,subject,body,channel,triage\n"),
        r"b\.csv has a header but no records .*write at least one record below the header",
    ),
    "gzip-compressed JSONL": (
        lambda t: _write(t, "b.jsonl", gzip.compress(_jsonl_bytes(generate_tickets(30)))),
        r"b\.jsonl is gzip-compressed: decompress it \(`gunzip -c b\.jsonl > out`\) or land the uncompressed file",
    ),
    "UTF-16 CSV": (
        lambda t: _write(t, "b.csv", pd.DataFrame(generate_tickets(30)).to_csv(index=False).encode("utf-16")),
        r"b\.csv is UTF-16 text, not UTF-8: re-encode it \(`iconv -f UTF-16 -t UTF-8 in > out`\)",
    ),
    "invalid JSON on line 3": (
        lambda t: _write(t, "b.jsonl", b'{"a": 1}\n{"a": 2}\n{"a": \n'),
        r"line 3: invalid JSON",
    ),
    "a line that is not an object": (
        lambda t: _write(t, "b.jsonl", b'{"a": 1}\n[1, 2]\n'),
        r"line 2: expected a JSON object per line, got list",
    ),
    "latin-1 bytes": (
        lambda t: _write(
            t,
            "b.jsonl",
            json.dumps(generate_tickets(1)[0]).encode() + b"\n" + "café".encode("latin-1") + b"\n",
        ),
        r"not valid UTF-8: byte 0xe9 at line 2.*re-encode",
    ),
    "ragged CSV": (
        lambda t: _write(t, "b.csv", b"a,b,c\n1,2,3\n4,5\n"),
        r"line 3: 2 fields, but the header has 3",
    ),
    "unclosed quote": (
        lambda t: _write(t, "b.csv", b'a,b,c\n1,2,3\n4,"5,6\n7,8,9\n'),
        r"record starting at line 3.*unclosed quote",
    ),
    "parquet with the wrong schema": (
        lambda t: _parquet(t, pa.table({"question": ["q"] * 30, "answer": ["a"] * 30})),
        r"maps column\(s\) \['ticket_id', 'body', 'triage', 'channel', 'subject'\].*has columns \['answer', 'question'\]",
    ),
    "truncated parquet": (
        lambda t: _write(t, "b.parquet", _good_parquet_bytes(t)[:-100]),
        r"not a complete Parquet file",
    ),
    "missing mapped column": (
        lambda t: _jsonl(
            t / "b.jsonl", [{k: v for k, v in r.items() if k != "triage"} for r in generate_tickets(30)]
        ),
        r"maps column\(s\) \['triage'\].*'body'.*Fix 'columns'",
    ),
    "numbers where text is expected": (
        lambda t: _jsonl(
            t / "b.jsonl", [{**r, "body": 42} if i == 4 else r for i, r in enumerate(generate_tickets(30))]
        ),
        r"column 'body' \(mapped to input\) must hold text, but 1 row\(s\) hold other types, "
        r"e\.g\. \S*b\.jsonl line 5: 42 \(int\); quote the values",
    ),
    "non-text values in two columns": (
        lambda t: _jsonl(
            t / "b.jsonl",
            [
                {**r, "body": 42} if i == 4 else {**r, "channel": 7} if i in (1, 8) else r
                for i, r in enumerate(generate_tickets(30))
            ],
        ),
        r"column 'body' \(mapped to input\) must hold text, but 1 row\(s\) hold other types, e\.g\. \S*b\.jsonl line 5: 42 \(int\); "
        r"column 'channel' \(mapped to label\) must hold text, but 2 row\(s\) hold other types, e\.g\. \S*b\.jsonl line 2: 7 \(int\); "
        r"quote the values or fix the producer",
    ),
    "entirely duplicates": (
        lambda t: _jsonl(
            t / "b.jsonl", [{**generate_tickets(1)[0], "ticket_id": f"T{i}"} for i in range(30)]
        ),
        r"max_duplicate_rate on 'input'",
    ),
    "a field over the byte limit": (
        lambda t: _jsonl(
            t / "b.jsonl",
            [{**r, "body": "x" * 70000} if i == 2 else r for i, r in enumerate(generate_tickets(30))],
        ),
        r"b\.jsonl line 3: column 'body' \(mapped to input\) is 70000 bytes, over the limit of 65536 "
        r"\(validation.max_field_bytes\); split or drop such records",
    ),
    "unknown extension": (lambda t: _write(t, "b.xml", b"<x/>"), r"cannot tell the format of .*b.xml"),
    "landing path that does not exist": (lambda t: t / "nowhere", r"landing path .*nowhere does not exist"),
    "empty landing folder": (lambda t: (t / "empty").mkdir() or t / "empty", r"holds no files"),
}


TICKET_COLUMNS = ["ticket_id", "subject", "body", "channel", "triage"]


def _jsonl_bytes(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _parquet(tmp_path, table):
    path = tmp_path / "b.parquet"
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_batch_gets_a_specific_error_and_nothing_is_published(tmp_path, store, config, case):
    make, pattern = MALFORMED[case]
    path = make(tmp_path)
    with pytest.raises(BatchRejected, match=pattern) as err:
        _validate(path, config, store, tmp_path)
    assert _nothing_published(store)
    if path.is_file():  # a batch that exists is moved to quarantine with its report
        assert store.list_keys("quarantine/support_tickets") == [err.value.report_key] and not path.exists()


def test_nested_instances_explode_into_rows(tmp_path, store, config):
    nested = config.model_copy(
        update={
            "explode": "instances",
            "keep": [],
            "columns": config.columns.model_copy(
                update={
                    "id": "id",
                    "input": "instances.input",
                    "response": "instances.output",
                    "instruction": "instruction",
                    "label": None,
                }
            ),
            "validation": config.validation.model_copy(
                update={"min_rows": 1, "allowed_labels": None, "response_is_json": False}
            ),
        }
    )
    records = [
        {
            "id": "task-1",
            "instruction": "Summarise.",
            "instances": [
                {"input": "first long input text", "output": "first output"},
                {"input": "second long input text", "output": "second output"},
            ],
        },
        {
            "id": "task-2",
            "instruction": "Translate.",
            "instances": [{"input": "third long input text", "output": "third output"}],
        },
    ]
    result = _validate(_jsonl(tmp_path / "nested.jsonl", records), nested, store, tmp_path)
    data = pd.read_parquet(store.fetch_dir(result["key"]) / "data.parquet")
    assert list(data["id"]) == ["task-1-0", "task-1-1", "task-2-0"]
    assert list(data["instruction"]) == ["Summarise.", "Summarise.", "Translate."]
    assert list(data["response"]) == ["first output", "second output", "third output"]
    bad = [{"id": "x", "instances": "not a list"}]
    with pytest.raises(BatchRejected, match="'instances' must be a list to explode, got str"):
        _validate(_jsonl(tmp_path / "bad-nested.jsonl", bad), nested, store, tmp_path)


@pytest.mark.parametrize(
    "fmt, where",
    [("csv", "line 5"), ("parquet", "row index 2")],  # the CSV's first record spans lines 2-3
)
def test_an_over_long_field_is_located_by_csv_record_line_or_parquet_row(tmp_path, store, config, fmt, where):
    records = generate_tickets(30, seed=4)
    records[0]["body"] += "\nSent from my phone."
    records[2]["body"] = "x" * 70000
    path = tmp_path / f"b.{fmt}"
    frame = pd.DataFrame(records)
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    with pytest.raises(
        BatchRejected, match=rf"b\.{fmt} {where}: column 'body' \(mapped to input\) is 70000 bytes"
    ):
        _validate(path, config, store, tmp_path)


def _zipped(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("b.jsonl", data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "kind, compress",
    [
        ("zip", _zipped),
        ("bzip2", bz2.compress),
        ("xz", lambda data: lzma.compress(data, format=lzma.FORMAT_XZ)),
    ],
)
def test_compressed_files_are_named_as_such(tmp_path, store, config, kind, compress):
    path = _write(tmp_path, "b.jsonl", compress(_jsonl_bytes(generate_tickets(30))))
    with pytest.raises(BatchRejected, match=rf"b\.jsonl is {kind}-compressed: decompress it"):
        _validate(path, config, store, tmp_path)


def test_utf16_without_a_bom_is_recognised_by_its_nul_bytes(tmp_path, store, config):
    path = _write(tmp_path, "b.jsonl", _jsonl_bytes(generate_tickets(30)).decode().encode("utf-16-le"))
    with pytest.raises(BatchRejected, match=r"is UTF-16 text, not UTF-8: .*iconv -f UTF-16LE -t UTF-8"):
        _validate(path, config, store, tmp_path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_utf8_bom_is_accepted(tmp_path, store, config, fmt):
    records = generate_tickets(30, seed=6)
    text = _jsonl_bytes(records).decode() if fmt == "jsonl" else pd.DataFrame(records).to_csv(index=False)
    path = _write(tmp_path, f"b.{fmt}", text.encode("utf-8-sig"))
    result = _validate(path, config, store, tmp_path)
    data = pd.read_parquet(store.fetch_dir(result["key"]) / "data.parquet")
    assert list(data["id"]) == [r["ticket_id"] for r in records]


def _contract(config, columns: dict, **rules):
    """The ticket contract over other columns, with the ticket-specific rules off."""
    return config.model_copy(
        update={
            "columns": ColumnMapping(**columns),
            "keep": [],
            "validation": config.validation.model_copy(
                update={"min_rows": 1, "allowed_labels": None, "response_is_json": False, **rules}
            ),
        }
    )


def _published(result, store):
    return pd.read_parquet(store.fetch_dir(result["key"]) / "data.parquet")


def _content_id(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def test_without_an_id_column_repeated_rows_share_a_content_hash_id(tmp_path, store, config):
    no_id = config.model_copy(update={"columns": config.columns.model_copy(update={"id": None})})
    records = generate_tickets(60, seed=2)
    records.append(dict(records[0], ticket_id="ignored", subject="ignored"))
    result = _validate(_jsonl(tmp_path / "b.jsonl", records), no_id, store, tmp_path)
    data = _published(result, store)
    assert set(data.columns) == no_id.columns.canonical_fields() | {"subject"}
    first = {"input": records[0]["body"], "label": records[0]["channel"], "response": records[0]["triage"]}
    assert data["id"].iloc[0] == data["id"].iloc[60] == _content_id(first)
    assert data["id"].nunique() == 60  # the repeat is left for the prompt builder's duplicate_id
    suite = json.loads((store.fetch_dir(result["key"]) / "validation.json").read_text())
    assert "expect_column_values_to_be_unique" not in {
        r["expectation_config"]["type"] for r in suite["results"]
    }


def test_generated_ids_of_exploded_items_hash_the_item_with_its_parent(tmp_path, store, config):
    columns = {"instruction": "task", "input": "items.input", "response": "items.output"}
    nested = _contract(config, columns, max_duplicate_rate=0.5).model_copy(update={"explode": "items"})
    item = {"input": "a long enough input", "output": "a long enough output"}
    records = [{"task": "Summarise.", "items": [item, item]}, {"task": "Translate.", "items": [item]}]
    data = _published(_validate(_jsonl(tmp_path / "n.jsonl", records), nested, store, tmp_path), store)
    expected = [
        _content_id({"instruction": task, "input": item["input"], "response": item["output"]})
        for task in ("Summarise.", "Summarise.", "Translate.")
    ]
    assert list(data["id"]) == expected and expected[0] != expected[2]


def test_instruction_only_data_has_empty_inputs_and_checks_the_instruction(tmp_path, store, config):
    only = _contract(config, {"id": "key", "instruction": "prompt", "response": "answer"})
    records = [
        {"key": f"k{i}", "prompt": f"Write a haiku about topic {i}.", "answer": f"Haiku number {i}, in full."}
        for i in range(12)
    ]
    data = _published(_validate(_jsonl(tmp_path / "i.jsonl", records), only, store, tmp_path), store)
    assert list(data.columns) == ["id", "input", "response", "instruction"]
    assert set(data.columns) == only.columns.canonical_fields() and set(data["input"]) == {""}
    records[3]["prompt"] = "   "
    with pytest.raises(BatchRejected, match=r"\[critical\] not_empty on 'instruction\+input'"):
        _validate(_jsonl(tmp_path / "i2.jsonl", records), only, store, tmp_path)


def test_with_an_instruction_an_empty_or_missing_input_is_valid_and_stored_as_empty(tmp_path, store, config):
    both = _contract(config, {"id": "key", "instruction": "task", "input": "context", "response": "answer"})
    records = [
        {"key": f"k{i}", "task": f"Answer question {i} briefly.", "answer": f"Answer {i}, briefly put."}
        for i in range(12)
    ]
    for i in range(0, 12, 3):
        records[i]["context"] = f"Some context for question {i}."
        records[i + 1]["context"] = None  # and records[i + 2] has no context at all
    records[1]["context"] = ""
    data = _published(_validate(_jsonl(tmp_path / "c.jsonl", records), both, store, tmp_path), store)
    assert data["input"].notna().all() and (data["input"] == "").sum() == 8
    assert data["input"].iloc[0] == "Some context for question 0."


def test_input_side_rules_check_instruction_and_input_joined(tmp_path, store, config):
    both = _contract(
        config,
        {"id": "key", "instruction": "task", "input": "context", "response": "answer"},
        input_chars=(1, 40),
    )
    records = [
        {
            "key": f"k{i}",
            "task": "Summarise the text.",
            "context": f"context no. {i:03d}",
            "answer": f"Summary number {i}.",
        }
        for i in range(12)
    ]
    # Measured joined by a blank line: 19 + 2 + 15 = 36 characters, and 5 more break the limit of 40
    # though the instruction and the input are each still under it.
    _validate(_jsonl(tmp_path / "ok.jsonl", records), both, store, tmp_path)
    records[0]["context"] += "x" * 5
    with pytest.raises(BatchRejected, match=r"input_chars on 'instruction\+input'.*max_value': 40"):
        _validate(_jsonl(tmp_path / "long.jsonl", records), both, store, tmp_path)


USER = {"role": "user", "content": "How do I reset my password?"}
REPLY = {"role": "assistant", "content": "Open settings and choose reset."}


def test_messages_become_instruction_input_and_response(tmp_path, store, config):
    chat = _contract(config, {"messages": "conversation", "label": "channel"})
    conversations = [
        [USER, REPLY],
        [{"role": "system", "content": "You are a support agent."}, USER, REPLY],
        [
            USER,
            REPLY,
            {"role": "user", "content": "It did not work."},
            {"role": "assistant", "content": "Try again."},
        ],
    ]
    records = [{"conversation": c, "channel": "chat"} for c in conversations]
    data = _published(_validate(_jsonl(tmp_path / "chat.jsonl", records), chat, store, tmp_path), store)
    assert (
        set(data.columns)
        == chat.columns.canonical_fields()
        == {"id", "instruction", "input", "response", "label"}
    )
    assert list(data["instruction"]) == ["", "You are a support agent.", ""]
    assert list(data["input"]) == [
        USER["content"],
        USER["content"],
        f"User: {USER['content']}\nAssistant: {REPLY['content']}\nUser: It did not work.",
    ]
    assert list(data["response"]) == [REPLY["content"], REPLY["content"], "Try again."]


CHAT_MALFORMED = {
    "messages that are not a list": (
        "hello there",
        r"line 2: 'conversation' must be a list of objects with text 'role' and 'content', got 'hello there'",
    ),
    "a message without text content": (
        [USER, {"role": "assistant", "content": 5}],
        r"line 2: 'conversation' must be a list of objects with text 'role' and 'content'",
    ),
    "an unknown role": (
        [USER, {"role": "tool", "content": "{}"}, REPLY],
        r"line 2: 'conversation' has role\(s\) \['tool'\]; the roles are system, user, assistant",
    ),
    "a conversation that does not end with the assistant": (
        [USER],
        r"line 2: 'conversation' must end with an assistant message \(the response to learn\), but ends with 'user'",
    ),
}


@pytest.mark.parametrize("case", sorted(CHAT_MALFORMED))
def test_malformed_conversations_name_the_file_record_and_fix(tmp_path, store, config, case):
    messages, pattern = CHAT_MALFORMED[case]
    chat = _contract(config, {"messages": "conversation"})
    path = _jsonl(tmp_path / "chat.jsonl", [{"conversation": [USER, REPLY]}, {"conversation": messages}])
    with pytest.raises(
        BatchRejected, match=r"chat\.jsonl " + pattern + r".*; write each conversation as a list"
    ):
        _validate(path, chat, store, tmp_path)


@pytest.mark.parametrize(
    "columns, error",
    [
        ({"messages": "m", "input": "i"}, r"map 'messages' or \['input'\], not both"),
        ({"messages": "m", "response": "r"}, r"map 'messages' or \['response'\], not both"),
        ({"messages": "m", "instruction": "s"}, r"map 'messages' or \['instruction'\], not both"),
        ({"id": "k", "input": "i"}, r"map 'response' \(or 'messages'\)"),
    ],
)
def test_column_mappings_that_cannot_work_are_config_errors(tmp_path, columns, error):
    path = tmp_path / "chat.yaml"
    path.write_text(f"name: chat\ncolumns: {json.dumps(columns)}\ntemplate: triage_v1\n")
    with pytest.raises(ConfigError, match=rf"chat\.yaml: bad value for 'columns': .*{error}"):
        load_dataset_config(path)


@pytest.mark.parametrize(
    "columns, fields",
    [
        ({"input": "i", "response": "r"}, {"id", "input", "response"}),
        ({"id": "k", "input": "i", "response": "r", "label": "l"}, {"id", "input", "response", "label"}),
        ({"instruction": "s", "response": "r"}, {"id", "input", "response", "instruction"}),
        ({"messages": "m"}, {"id", "input", "response", "instruction"}),
    ],
)
def test_canonical_fields_follow_the_mapping(columns, fields):
    assert ColumnMapping(**columns).canonical_fields() == fields


def test_parquet_conversations_without_ids(tmp_path, store, config):
    chat = _contract(config, {"messages": "conversation"}, max_duplicate_rate=0.5)
    other = {"role": "assistant", "content": "Use the reset link we emailed."}
    path = _parquet(tmp_path, pa.table({"conversation": [[USER, REPLY], [USER, other]]}))
    data = _published(_validate(path, chat, store, tmp_path), store)
    assert list(data["response"]) == [REPLY["content"], other["content"]] and data["id"].nunique() == 2
