import json

import pandas as pd
import pytest

from tuneops.config import load_dataset_config
from tuneops.sample_data import generate_tickets
from tuneops.store import ArtifactStore
from tuneops.validation import BatchRejected, validate_batch


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture(scope="module")
def config():
    return load_dataset_config("support_tickets")


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_good_batch_is_published_with_report_and_reused(tmp_path, store, config):
    batch = _write_jsonl(tmp_path / "b.jsonl", generate_tickets(60, seed=2))
    result = validate_batch(str(batch), config, store, tmp_path / "cache")
    assert result["rows"] == 60 and result["reused"] is False
    folder = store.fetch_dir(result["key"])
    assert set(pd.read_parquet(folder / "data.parquet").columns) == {"id", "input", "response", "subject", "channel"}
    assert json.loads((folder / "validation.json").read_text())["success"] is True
    assert validate_batch(str(batch), config, store, tmp_path / "cache")["reused"] is True


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_batches(tmp_path, store, config, fmt):
    frame = pd.DataFrame(generate_tickets(40, seed=5))
    path = tmp_path / f"b.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    assert validate_batch(str(path), config, store, tmp_path / "cache")["rows"] == 40


def test_failed_expectations_are_all_named_and_nothing_is_published(tmp_path, store, config):
    records = generate_tickets(60, seed=2)
    records[0]["body"] = None
    records[1]["triage"] = "not json at all"
    records[3]["ticket_id"] = records[2]["ticket_id"]
    batch = _write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(BatchRejected) as err:
        validate_batch(str(batch), config, store, tmp_path / "cache")
    msg = str(err.value)
    assert "expect_column_values_to_not_be_null" in msg and '"input"' in msg
    assert "expect_column_values_to_be_json_parseable" in msg
    assert "expect_column_values_to_be_unique" in msg
    assert store.list_keys("validated/support_tickets") == []
    assert len(store.list_keys("rejected/support_tickets")) == 1


def test_too_few_rows_fail_the_row_count_expectation(tmp_path, store, config):
    batch = _write_jsonl(tmp_path / "small.jsonl", generate_tickets(5, seed=2))
    with pytest.raises(BatchRejected, match="expect_table_row_count_to_be_between"):
        validate_batch(str(batch), config, store, tmp_path / "cache")


def test_missing_mapped_column_names_it_and_lists_the_columns(tmp_path, store, config):
    records = [{k: v for k, v in r.items() if k != "triage"} for r in generate_tickets(30, seed=2)]
    batch = _write_jsonl(tmp_path / "b.jsonl", records)
    msg = str(pytest.raises(BatchRejected, validate_batch, str(batch), config, store, tmp_path / "cache").value)
    assert "['triage']" in msg and "'body'" in msg and "'ticket_id'" in msg


def test_unknown_format_and_empty_folder_are_explained(tmp_path, store, config):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchRejected, match="holds no files"):
        validate_batch(str(tmp_path / "empty"), config, store, tmp_path / "cache")
    (tmp_path / "b.xml").write_text("<x/>")
    with pytest.raises(BatchRejected, match="cannot tell the format"):
        validate_batch(str(tmp_path / "b.xml"), config, store, tmp_path / "cache")
