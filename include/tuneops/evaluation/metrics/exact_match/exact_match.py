"""Exact match after trimming surrounding whitespace, as an ``evaluate`` metric module."""

import datasets
import evaluate

_DESCRIPTION = (
    "Share of predictions equal to their reference once leading and trailing whitespace is removed."
)
_KWARGS = "predictions: list of str; references: list of str. Returns exact_match in [0, 1] and per-example matches."


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        matches = [p.strip() == r.strip() for p, r in zip(predictions, references, strict=True)]
        if not matches:
            return {"exact_match": float("nan"), "matches": []}
        return {"exact_match": sum(matches) / len(matches), "matches": matches}
