"""Evaluation refuses to produce metrics it cannot stand behind; the gate then fails closed."""

import json

import pytest

from tests.support.manifests import manifest_for
from tuneops.config import EvalConfig, load_recipe, load_safety_suite, load_template
from tuneops.core.store import ArtifactStore
from tuneops.evaluation.evaluate import EvaluationError, ModelRef, evaluate_model
from tuneops.evaluation.gate import decide


def _dataset(tmp_path, test_rows: int):
    from datasets import Dataset, DatasetDict

    row = {"id": "t1", "prompt": "### Ticket hello", "response": '{"category": "bug"}', "source_batch": "b"}
    test = Dataset.from_list([row] * max(test_rows, 1))
    splits = {"train": Dataset.from_list([row]), "test": test if test_rows else test.filter(lambda r: False)}
    DatasetDict(splits).save_to_disk(str(tmp_path / "data"))
    manifest = manifest_for(load_template("triage_v1"), add_special_tokens=True)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_empty_test_split_is_an_evaluation_error_and_the_gate_fails_closed_naming_it(tmp_path):
    dataset = _dataset(tmp_path / "ds", test_rows=0)
    store = ArtifactStore(str(tmp_path / "store"))
    ref = ModelRef("candidate", "fp", "/nonexistent-model")
    with pytest.raises(
        EvaluationError,
        match="dataset v1 has an empty test split; nothing to evaluate, so nothing is promoted",
    ):
        evaluate_model(
            ref, dataset, "v1", EvalConfig(splits=["test"]), load_safety_suite("support-triage"), store
        )
    assert store.list_keys("evaluations") == []

    evaluations = {
        "base": {"error": "dataset v1 has an empty test split"},
        "candidate": {"error": "dataset v1 has an empty test split"},
    }
    decision = decide(load_recipe("tiny-local").gate, evaluations)
    assert not decision["passed"]
    assert decision["deciding_rule"] == "base evaluation failed: dataset v1 has an empty test split"


def test_a_missing_golden_split_is_skipped_but_a_rule_on_it_fails_closed(tmp_path):
    from tuneops.config import GateRules, MetricRule

    rules = GateRules(rules={"golden.rougeL": MetricRule(min_value=0.5)}, safety_floor=0.0)
    metrics = {"test.rougeL": 0.9, "safety.pass_rate": 1.0}
    decision = decide(rules, {"base": {"metrics": metrics}, "candidate": {"metrics": metrics}})
    assert not decision["passed"]
    assert (
        decision["deciding_rule"]
        == "golden.rougeL is missing or not finite for the candidate (min_value): failing closed"
    )
