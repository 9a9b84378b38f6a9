"""Format check for templates that promise JSON: each output must be one JSON object with the required keys."""

import datasets
import evaluate

from tuneops.evaluation.formats import json_problem

_DESCRIPTION = "Share of outputs that parse as a JSON object holding every required key (values non-empty)."
_KWARGS = (
    "predictions: list of str; required_keys: list of str. Returns format_valid in [0, 1] and, per example, "
    "the problem found ('' when valid)."
)


class JsonFormat(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, required_keys=()):
        problems = [json_problem(p, list(required_keys)) for p in predictions]
        if not problems:
            return {"format_valid": float("nan"), "problems": []}
        return {"format_valid": sum(not p for p in problems) / len(problems), "problems": problems}
