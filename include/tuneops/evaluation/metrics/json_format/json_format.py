"""Format check for templates that promise JSON: each output must be one JSON object with the required keys."""

import json

import datasets
import evaluate

_DESCRIPTION = "Share of outputs that parse as a JSON object holding every required key (values non-empty)."
_KWARGS = (
    "predictions: list of str; required_keys: list of str. Returns format_valid in [0, 1] and, per example, "
    "the problem found ('' when valid)."
)


def check(text, required_keys):
    """The problem with ``text`` as a JSON object with ``required_keys``, or '' if there is none."""
    try:
        obj = json.loads(text)
    except (TypeError, ValueError) as exc:
        return f"not JSON: {exc}"
    if not isinstance(obj, dict):
        return f"JSON {type(obj).__name__}, not an object"
    missing = [k for k in required_keys if obj.get(k) in (None, "", [], {})]
    return f"missing or empty keys: {', '.join(missing)}" if missing else ""


class JsonFormat(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, required_keys=()):
        problems = [check(p, list(required_keys)) for p in predictions]
        if not problems:
            return {"format_valid": float("nan"), "problems": []}
        return {"format_valid": sum(not p for p in problems) / len(problems), "problems": problems}
