import math

from tuneops.config import GateRules
from tuneops.gate import decide, format_table

BASE = {"rouge1": 0.1, "rouge2": 0.0, "rougeL": 0.1, "bleu": 0.05, "exact_match": 0.0}


def _m(rougeL):
    return {**BASE, "rougeL": rougeL}


def test_candidate_that_beats_base_passes_and_table_lists_every_metric():
    d = decide(GateRules(metric="rougeL", min_value=0.3, min_improvement_over_base=0.1), _m(0.7), BASE, None)
    assert d["passed"]
    assert [r["metric"] for r in d["table"]] == ["rouge1", "rouge2", "rougeL", "bleu", "exact_match"]
    row = next(r for r in d["table"] if r["gated"])
    assert math.isclose(row["delta_vs_base"], 0.6)
    text = format_table(d)
    assert "gate PASSED on rougeL" in text and "+0.6000" in text


def test_each_rule_can_fail_the_gate_with_its_reason():
    rules = GateRules(metric="rougeL", min_value=0.5, min_improvement_over_base=0.2, max_regression_vs_champion=0.01)
    low = decide(rules, _m(0.25), BASE, None)
    assert not low["passed"]
    assert any("min_value" in r for r in low["reasons"]) and any("improves on base" in r for r in low["reasons"])
    regress = decide(rules, _m(0.6), BASE, _m(0.7))
    assert not regress["passed"] and "vs champion 0.7000" in regress["reasons"][0]
    assert decide(rules, _m(0.695), BASE, _m(0.7))["passed"]


def test_nan_or_missing_metric_fails_closed():
    rules = GateRules(metric="rougeL")
    assert not decide(rules, _m(float("nan")), BASE, None)["passed"]
    assert "failing closed" in decide(rules, {"bleu": 1.0}, BASE, None)["reasons"][0]
