"""The shipped evaluate modules load by path, offline, and compute the right numbers."""

import math

import pytest

from tuneops.evaluation import EvaluationError, compute_metrics, load_metric


def test_rouge_and_bleu_modules_load_offline_by_path():
    rouge = load_metric("rouge").compute(predictions=["the cat sat"], references=["the cat sat"])
    assert rouge == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    bleu = load_metric("bleu").compute(predictions=["a b c d e f"], references=["a b c d e f"])
    assert math.isclose(bleu["bleu"], 1.0)


def test_metrics_separate_right_from_wrong_answers():
    refs = ['{"category": "billing", "priority": "high", "team": "payments"}'] * 2
    perfect = compute_metrics(list(refs), refs)
    assert perfect["exact_match"] == 1.0 and perfect["rougeL"] == 1.0
    wrong = compute_metrics(['{"category": "bug", "priority": "low", "team": "engineering"}'] * 2, refs)
    assert wrong["exact_match"] == 0.0 and 0.2 < wrong["rougeL"] < 0.8 and wrong["bleu"] < perfect["bleu"]


def test_empty_eval_set_is_an_error():
    with pytest.raises(EvaluationError, match="empty"):
        compute_metrics([], [])
