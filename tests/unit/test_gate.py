"""The gate's rules: every rule checked and listed, the deciding one named, failing closed."""

import pytest

from tuneops.config import ConfigError, GateRules, MetricRule, load_recipe
from tuneops.evaluation.gate import decide, format_table

BASE = {"test.rougeL": 0.10, "test.exact_match": 0.0, "test.perplexity": 40.0, "safety.pass_rate": 0.2}
CHAMP = {"test.rougeL": 0.80, "test.exact_match": 0.6, "test.perplexity": 1.5, "safety.pass_rate": 1.0}


def _evals(cand, champ=None, errors=None):
    out = {"base": {"metrics": BASE}, "candidate": {"metrics": cand}}
    if champ is not None:
        out["champion"] = {"metrics": champ, "version": "3"}
    for role, message in (errors or {}).items():
        out[role] = {"error": message}
    return out


def _rules(safety_floor=0.9, **rules):
    return GateRules(rules={k: MetricRule(**v) for k, v in rules.items()}, safety_floor=safety_floor)


RULES = _rules(
    **{
        "test.rougeL": {
            "min_value": 0.5,
            "min_improvement_over_base": 0.2,
            "max_regression_vs_champion": 0.01,
        }
    }
)


def test_better_candidate_passes_and_every_rule_is_listed():
    d = decide(RULES, _evals({**CHAMP, "test.rougeL": 0.85}, CHAMP))
    assert d["passed"], d["reasons"]
    assert [(c["metric"], c["rule"]) for c in d["checks"]] == [
        ("test.rougeL", "min_value"),
        ("test.rougeL", "min_improvement_over_base"),
        ("test.rougeL", "max_regression_vs_champion"),
        ("safety.pass_rate", "safety_floor"),
    ]
    assert d["deciding_rule"] == "all 4 rules passed"
    row = next(r for r in d["table"] if r["metric"] == "test.rougeL")
    assert row["gated"] and row["champion"] == 0.80 and abs(row["delta_vs_champion"] - 0.05) < 1e-9


def test_worse_candidate_is_rejected_and_the_deciding_rule_is_named():
    d = decide(RULES, _evals({**CHAMP, "test.rougeL": 0.70}, CHAMP))
    assert not d["passed"]
    assert d["deciding_rule"].startswith(
        "test.rougeL 0.7000 vs champion 0.8000: regression 0.1000 > allowed 0.01"
    )
    text = format_table(d)
    assert "gate FAILED: test.rougeL 0.7000 vs champion" in text and "[FAIL]" in text


def test_safety_regression_blocks_promotion_even_when_rouge_improves():
    candidate = {**CHAMP, "test.rougeL": 0.95, "test.exact_match": 0.9, "safety.pass_rate": 0.5}
    d = decide(RULES, _evals(candidate, CHAMP))
    assert not d["passed"]
    assert d["deciding_rule"] == "safety.pass_rate 0.5000 < safety_floor 0.9"
    assert all(c["passed"] for c in d["checks"] if c["metric"] == "test.rougeL")


def test_lower_is_better_for_perplexity():
    rules = _rules(
        **{"test.perplexity": {"max_regression_vs_champion": 0.1, "min_improvement_over_base": 1.0}}
    )
    assert decide(rules, _evals({**CHAMP, "test.perplexity": 1.55}, CHAMP))["passed"]
    worse = decide(rules, _evals({**CHAMP, "test.perplexity": 2.0}, CHAMP))
    assert not worse["passed"] and "regression 0.5000 > allowed 0.1" in worse["deciding_rule"]


def test_min_improvement_over_champion_applies_only_when_there_is_one():
    rules = _rules(**{"test.rougeL": {"min_improvement_over_champion": 0.05}})
    assert decide(rules, _evals({**CHAMP, "test.rougeL": 0.82}))["passed"]
    d = decide(rules, _evals({**CHAMP, "test.rougeL": 0.82}, CHAMP))
    assert not d["passed"] and "improves on champion (0.8000) by +0.0200 < 0.05" in d["deciding_rule"]


@pytest.mark.parametrize(
    "evaluations, expected",
    [
        (
            _evals({**CHAMP, "test.rougeL": float("nan")}),
            "test.rougeL is missing or not finite for the candidate",
        ),
        (_evals({"safety.pass_rate": 1.0}), "test.rougeL is missing or not finite for the candidate"),
        (
            _evals(CHAMP, errors={"candidate": "generation failed for the candidate model"}),
            "candidate evaluation failed",
        ),
        (
            _evals(CHAMP, CHAMP, errors={"champion": "could not load champion v3"}),
            "champion evaluation failed",
        ),
        (_evals(CHAMP, errors={"base": "dataset x has an empty test split"}), "base evaluation failed"),
    ],
)
def test_failed_evaluations_and_nan_fail_closed(evaluations, expected):
    d = decide(RULES, evaluations)
    assert not d["passed"]
    assert d["deciding_rule"].startswith(expected)


def test_unknown_metric_in_rules_names_the_valid_ones(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base_model: builtin:tiny-llama\ngate:\n  rules:\n    test.rouge_l: {min_value: 0.5}\n")
    with pytest.raises(ConfigError, match=r"unknown metric\(s\) \['test.rouge_l'\].*test.rougeL"):
        load_recipe(recipe)
    recipe.write_text("base_model: builtin:tiny-llama\ngate:\n  metric: rougeL\n")
    with pytest.raises(ConfigError, match="unknown key 'gate.metric'; valid keys here: rules, safety_floor"):
        load_recipe(recipe)
