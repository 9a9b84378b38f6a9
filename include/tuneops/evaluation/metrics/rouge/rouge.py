"""ROUGE-1/2/L (mean F1) as an ``evaluate`` metric module, shipped so it loads offline by path."""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "ROUGE-1, ROUGE-2 and ROUGE-L F1, averaged over examples (rouge_score, no stemming)."
_KWARGS = "predictions: list of str; references: list of str. Returns rouge1, rouge2, rougeL in [0, 1]."


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin, ROUGE: A Package for Automatic Evaluation of Summaries, 2004.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        types = ["rouge1", "rouge2", "rougeL"]
        scorer = rouge_scorer.RougeScorer(types, use_stemmer=False)
        if not predictions:
            return {t: float("nan") for t in types}
        totals = {t: 0.0 for t in types}
        for pred, ref in zip(predictions, references, strict=True):
            scores = scorer.score(ref, pred)
            for t in types:
                totals[t] += scores[t].fmeasure
        return {t: totals[t] / len(predictions) for t in types}
