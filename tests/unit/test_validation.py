"""The data contract: every malformed input gets a specific error, and nothing is published."""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tuneops.config import load_dataset_config
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
        lambda t: _write(t, "b.csv", b"ticket_id,subject,body,channel,triage\n"),
        r"no rows after mapping",
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
        r"column 'body' \(mapped to input\) must hold text.*row 5: 42 \(int\)",
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
        r"row 3 is 70000 bytes, over the limit of 65536 \(validation.max_field_bytes\)",
    ),
    "unknown extension": (lambda t: _write(t, "b.xml", b"<x/>"), r"cannot tell the format of .*b.xml"),
    "landing path that does not exist": (lambda t: t / "nowhere", r"landing path .*nowhere does not exist"),
    "empty landing folder": (lambda t: (t / "empty").mkdir() or t / "empty", r"holds no files"),
}


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
