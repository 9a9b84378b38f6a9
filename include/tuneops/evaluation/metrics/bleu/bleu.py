"""Corpus BLEU (sacrebleu, scaled to [0, 1]) as an ``evaluate`` metric module, loaded offline by path."""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = "Corpus-level BLEU from sacrebleu with its default 13a tokenizer, divided by 100."
_KWARGS = "predictions: list of str; references: list of str (one reference each). Returns bleu in [0, 1]."


class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Post, A Call for Clarity in Reporting BLEU Scores, WMT 2018.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        if not predictions:
            return {"bleu": float("nan")}
        return {"bleu": sacrebleu.corpus_bleu(list(predictions), [list(references)]).score / 100.0}
