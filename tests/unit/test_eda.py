import json
import re

import pandas as pd
import pytest

from tuneops.core.sample_data import generate_tickets
from tuneops.data import eda
from tuneops.data.eda import build_eda_report

PNG_MAGIC = b"\x89PNG"


def _tickets(n, seed):
    return pd.DataFrame(
        [
            {"id": t["ticket_id"], "input": t["body"], "response": t["triage"], "channel": t["channel"]}
            for t in generate_tickets(n, seed=seed)
        ]
    )


def test_rates_lengths_and_duplicates_are_exact(tmp_path):
    frame = pd.DataFrame(
        {
            "id": ["1", "2", "3", "4", "5", "6"],
            "input": ["Order 123 late!", "order 456 late", "Order 123 late!", None, "  ", "fine"],
            "response": ["a", "a", "a", "a", "a", "b"],
        }
    )
    summary = build_eda_report(frame, tmp_path, text_columns=["input", "response"])
    col = summary["columns"]["input"]
    assert summary["rows"] == 6
    assert col["null_rate"] == pytest.approx(1 / 6)
    assert col["empty_rate"] == pytest.approx(1 / 5)
    # Only the third value repeats one exactly; with digits, case and "!" dropped the
    # second and third both repeat the first.
    assert col["duplicate_rate"] == pytest.approx(1 / 5)
    assert col["near_duplicate_rate"] == pytest.approx(2 / 5)
    assert col["chars"] == {"min": 2, "mean": 10.0, "p50": 14.0, "p95": 15.0, "max": 15}
    assert col["sampled_rows"] == 5
    assert summary["columns"]["response"]["duplicate_rate"] == pytest.approx(4 / 6)
    assert summary["duplicate_row_rate"] == pytest.approx(1 / 6)
    assert "tokens" not in col and "shift" not in summary and "labels" not in summary


def test_ngrams_are_lowercase_words_without_numbers(tmp_path):
    frame = pd.DataFrame({"input": ["The cat sat", "the CAT ran 42", "the dog"]})
    col = build_eda_report(frame, tmp_path, text_columns=["input"])["columns"]["input"]
    assert col["top_unigrams"] == [["the", 3], ["cat", 2], ["sat", 1], ["ran", 1], ["dog", 1]]
    assert col["top_bigrams"] == [["the cat", 2], ["cat sat", 1], ["cat ran", 1], ["the dog", 1]]


def test_pii_hits_are_summed_by_kind(tmp_path):
    frame = pd.DataFrame(
        {
            "input": ["write to ana@example.com", "call +1 415-555-1238 or ana@example.com today", "nothing"],
            "response": ["ok", "ok", "ok"],
        }
    )
    summary = build_eda_report(frame, tmp_path, text_columns=["input", "response"])
    assert summary["columns"]["input"]["pii"] == {"email": 2, "phone": 1}
    assert summary["columns"]["response"]["pii"] == {}


def test_label_counts(tmp_path):
    frame = pd.DataFrame({"input": ["a", "b", "c", "d"], "channel": ["email", "chat", "email", None]})
    summary = build_eda_report(frame, tmp_path, text_columns=["input"], label_column="channel")
    assert summary["labels"] == {"email": 2, "chat": 1}
    assert summary["label_values"] == 2
    assert "labels.png" in summary["plots"]


def test_token_counts_use_the_given_counter(tmp_path):
    frame = pd.DataFrame({"input": ["a b c", "a b", None]})
    summary = build_eda_report(frame, tmp_path, text_columns=["input"], count_tokens=lambda s: len(s.split()))
    assert summary["columns"]["input"]["tokens"] == {"min": 2, "mean": 2.5, "p50": 2.5, "p95": 2.95, "max": 3}
    assert "tokens_input.png" in summary["plots"]


def test_no_shift_against_an_identical_batch(tmp_path):
    frame = pd.DataFrame({"input": [f"the cat sat {'very ' * (i % 7)}still" for i in range(100)]})
    shift = build_eda_report(frame, tmp_path, text_columns=["input"], previous=frame.copy())["shift"]["input"]
    assert shift["psi_chars"] == pytest.approx(0.0, abs=1e-12)
    assert shift["ks_chars"] == pytest.approx(0.0, abs=1e-12)
    assert shift["vocab_jaccard"] == 1.0
    assert shift["oov_rate"] == 0.0


def test_longer_texts_and_new_words_show_as_shift(tmp_path):
    previous = pd.DataFrame({"input": ["the cat sat" + "!" * (i % 10) for i in range(200)]})
    current = pd.DataFrame({"input": ["the dog sat" + "!" * 100 for _ in range(200)]})
    summary = build_eda_report(current, tmp_path, text_columns=["input"], previous=previous)
    shift = summary["shift"]["input"]
    # Every current length falls into the last of ten equally full bins: PSI far above the
    # 0.25 usually read as a major shift, and the length distributions do not overlap.
    assert shift["psi_chars"] > 5
    assert shift["ks_chars"] == pytest.approx(1.0)
    assert shift["oov_rate"] == pytest.approx(1 / 3)
    assert shift["vocab_jaccard"] == pytest.approx(2 / 4)
    assert summary["previous_rows"] == 200


def test_an_all_null_column_gives_none_not_nan(tmp_path):
    frame = pd.DataFrame({"input": [None, None], "response": ["x", "y"]})
    summary = build_eda_report(
        frame, tmp_path, text_columns=["input", "response"], previous=frame, count_tokens=len
    )
    col = summary["columns"]["input"]
    assert col["null_rate"] == 1.0
    assert col["empty_rate"] is None and col["duplicate_rate"] is None
    assert col["chars"] == dict.fromkeys(("min", "mean", "p50", "p95", "max"))
    assert summary["shift"]["input"] == {
        "psi_chars": None,
        "ks_chars": None,
        "vocab_jaccard": None,
        "oov_rate": None,
    }
    json.dumps(summary, allow_nan=False)


def test_text_work_runs_on_a_fixed_sample_but_rates_cover_every_row(tmp_path, monkeypatch):
    monkeypatch.setattr(eda, "SAMPLE_SIZE", 50)
    frame = pd.DataFrame({"input": ["alpha"] * 100 + ["beta"] * 98 + ["gamma", "delta"]})
    first = build_eda_report(frame, tmp_path / "a", text_columns=["input"])["columns"]["input"]
    again = build_eda_report(frame, tmp_path / "b", text_columns=["input"])["columns"]["input"]
    assert first["sampled_rows"] == 50
    assert sum(n for _, n in first["top_unigrams"]) == 50
    assert first["duplicate_rate"] == pytest.approx(196 / 200)
    assert first["chars"]["max"] == 5 and first["chars"]["min"] == 4
    assert first == again


def test_report_page_plots_and_summary_file(tmp_path):
    frame = pd.DataFrame(
        {
            "input": ["hello there", "mail me at bo@example.org", None],
            "response": ["fine", "", "ok"],
            "tier": ["<b>vip</b>", "free", "free"],
        }
    )
    summary = build_eda_report(
        frame,
        tmp_path / "eda",
        text_columns=["input", "response"],
        label_column="tier",
        previous=frame,
        count_tokens=lambda s: len(s.split()),
        title="<script>alert(1)</script>",
    )
    out = tmp_path / "eda"
    page = (out / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(images) == sorted(summary["plots"])
    assert sorted(p.name for p in out.glob("*.png")) == sorted(summary["plots"])
    assert {"chars_input.png", "tokens_response.png", "null_empty.png", "labels.png", "pii.png"} <= set(
        images
    )
    for name in images:
        assert (out / name).read_bytes()[:4] == PNG_MAGIC
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>vip</b>" not in page and "&lt;b&gt;vip&lt;/b&gt;" in page
    assert "Shift from the previous batch" in page
    assert json.loads((out / "summary.json").read_text()) == summary


def test_odd_column_names_get_distinct_plot_files(tmp_path):
    frame = pd.DataFrame({"a b": ["x"], "a/b": ["y"]})
    plots = build_eda_report(frame, tmp_path, text_columns=["a b", "a/b"])["plots"]
    assert {"chars_a_b.png", "chars_a_b_1.png"} <= set(plots)
    assert all((tmp_path / p).is_file() for p in plots)


def test_a_missing_column_is_named(tmp_path):
    frame = pd.DataFrame({"input": ["x"]})
    with pytest.raises(ValueError, match=r"frame has no column\(s\) \['response'\]"):
        build_eda_report(frame, tmp_path, text_columns=["input", "response"])
    with pytest.raises(ValueError, match=r"previous has no column\(s\) \['input'\]"):
        build_eda_report(frame, tmp_path, text_columns=["input"], previous=pd.DataFrame({"body": ["x"]}))


def test_realistic_ticket_batches(tmp_path):
    summary = build_eda_report(
        _tickets(300, seed=1),
        tmp_path,
        text_columns=["input", "response"],
        label_column="channel",
        previous=_tickets(300, seed=2),
        count_tokens=lambda s: len(s.split()),
        title="support tickets",
    )
    assert summary["rows"] == 300 and summary["duplicate_row_rate"] == 0.0
    inputs, responses = summary["columns"]["input"], summary["columns"]["response"]
    assert inputs["null_rate"] == 0.0 and inputs["empty_rate"] == 0.0 and inputs["sampled_rows"] == 300
    assert 20 < inputs["chars"]["mean"] < 400 and inputs["tokens"]["min"] >= 5
    # A triage is one of at most 5 categories x 4 priorities (the team follows the category).
    assert responses["duplicate_rate"] >= 1 - 20 / 300
    assert {w for w, _ in responses["top_unigrams"][:3]} == {"category", "priority", "team"}
    assert sum(summary["labels"].values()) == 300
    # Two batches from the same generator: no shift worth a look.
    for shift in summary["shift"].values():
        assert shift["psi_chars"] < 0.25 and shift["ks_chars"] < 0.2
        assert shift["vocab_jaccard"] > 0.8 and shift["oov_rate"] < 0.05
