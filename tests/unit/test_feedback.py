"""Corrections from /feedback land once, in the dataset's raw format, and only when they can be records."""

import json
from datetime import UTC, datetime, timedelta

from tuneops.core.inference_log import write_feedback
from tuneops.core.lineage import FEEDBACK_ID_PREFIX
from tuneops.core.settings import load_settings
from tuneops.core.store import ArtifactStore
from tuneops.data.feedback import export_corrections

CORRECTION = json.dumps({"category": "billing", "priority": "high", "team": "payments"})


def _answer(store, i: int, inputs: dict | None, correction: str | None = CORRECTION, mode: str = "inputs"):
    request = {"model": "m", "version": "1", "mode": mode, "prompt": "p", "inputs": inputs, "response": "r"}
    answer = {"request_id": f"req-{i}", "rating": "down", "correction": correction, "comment": None}
    return write_feedback(store, request, answer, now=datetime.now(UTC) - timedelta(minutes=1))["feedback_id"]


def _ticket(i: int) -> dict:
    return {
        "subject": f"Charged twice #{i}",
        "input": f"My card was charged twice for order {1000 + i}.",
        "label": "web",
    }


def test_corrections_land_once_in_the_raw_columns_with_their_lineage(tmp_path):
    settings = load_settings({"TUNEOPS_HOME": str(tmp_path)})
    store = ArtifactStore.from_settings(settings)
    ids = [_answer(store, i, _ticket(i)) for i in range(22)]
    _answer(store, 90, {"subject": "no label", "input": "My card was charged twice."})
    _answer(store, 91, None, mode="prompt")
    _answer(store, 92, _ticket(92), correction=None)  # a rating without a correction is not data

    landed = export_corrections("support_tickets", settings)
    assert landed["rows"] == 22 and landed["feedback_ids"] == sorted(ids)
    lineage = json.loads(open(landed["lineage_uri"]).read())
    assert lineage["feedback_ids"] == sorted(ids) and lineage["request_ids"] == sorted(
        f"req-{i}" for i in range(22)
    )
    assert landed["skipped"] == {
        "request lacks label": 1,
        "request sent a raw prompt or chat messages, not the template's fields": 1,
    }
    rows = [json.loads(line) for line in open(landed["batch_uri"])]
    assert set(rows[0]) == {"ticket_id", "body", "triage", "subject", "channel"}
    assert {r["ticket_id"] for r in rows} == {FEEDBACK_ID_PREFIX + i for i in ids}
    assert all(r["triage"] == CORRECTION for r in rows)

    again = export_corrections("support_tickets", settings)
    assert again["batch_uri"] is None and again["pending"] == 0, "corrections land once"


def test_fewer_corrections_than_a_batch_needs_wait_for_more(tmp_path):
    settings = load_settings({"TUNEOPS_HOME": str(tmp_path)})
    store = ArtifactStore.from_settings(settings)
    for i in range(5):
        _answer(store, i, _ticket(i))
    waiting = export_corrections("support_tickets", settings)
    assert waiting["batch_uri"] is None and waiting["pending"] == 5
    for i in range(5, 20):
        _answer(store, i, _ticket(i))
    assert export_corrections("support_tickets", settings)["rows"] == 20


def test_only_the_projects_own_models_corrections_land_in_its_dataset(tmp_path):
    """Two projects share an artifact store: each one's corrections become its own dataset's records."""
    settings = load_settings({"TUNEOPS_HOME": str(tmp_path)})
    store = ArtifactStore.from_settings(settings)
    ours = [_answer(store, i, _ticket(i)) for i in range(20)]
    for i in range(20, 45):
        request = {"model": "other", "version": "1", "mode": "inputs", "prompt": "p", "inputs": _ticket(i)}
        answer = {"request_id": f"req-{i}", "rating": "down", "correction": CORRECTION, "comment": None}
        write_feedback(
            store, request | {"response": "r"}, answer, now=datetime.now(UTC) - timedelta(minutes=1)
        )

    landed = export_corrections("support_tickets", settings, model_name="m")
    assert landed["feedback_ids"] == sorted(ours)


def test_a_dataset_whose_records_corrections_cannot_fill_lands_none_and_says_why(tmp_path):
    import yaml

    settings = load_settings({"TUNEOPS_HOME": str(tmp_path)})
    store = ArtifactStore.from_settings(settings)
    for i in range(20):
        _answer(store, i, _ticket(i))
    config = tmp_path / "noid.yaml"
    config.write_text(yaml.safe_dump({"name": "noid", "columns": {"input": "body", "response": "triage"}}))
    result = export_corrections(str(config), settings)
    assert result["batch_uri"] is None and result["rows"] == 0
    (reason,) = result["skipped"]
    assert "maps no id or input column" in reason and result["skipped"][reason] == 20
