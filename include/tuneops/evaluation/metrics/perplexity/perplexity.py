"""Perplexity of reference responses given their prompts, under a model passed in (no hub download).

Teacher-forced: the prompt is context, only the response tokens (plus the closing EOS the
trainer adds) are scored. Corpus perplexity is exp(total NLL / total scored tokens).
"""

import math

import datasets
import evaluate
import torch

_DESCRIPTION = "Token-level perplexity of each reference response conditioned on its prompt."
_KWARGS = (
    "predictions: list of str, the responses to score; prompts: list of str; model, tokenizer: a causal LM and "
    "its tokenizer; batch_size: int; add_special_tokens: bool, as in training. Returns perplexity (corpus) and "
    "perplexities (per example)."
)


class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "prompts": datasets.Value("string")}
            ),
        )

    def _compute(
        self, predictions, prompts, model=None, tokenizer=None, batch_size=16, add_special_tokens=True
    ):
        if model is None or tokenizer is None:
            raise ValueError("perplexity needs model= and tokenizer= (the model under evaluation)")
        if not predictions:
            return {"perplexity": float("nan"), "perplexities": []}
        examples = []
        for prompt, response in zip(prompts, predictions, strict=True):
            p = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
            r = tokenizer(response, add_special_tokens=False)["input_ids"]
            if not r or r[-1] != tokenizer.eos_token_id:
                r = [*r, tokenizer.eos_token_id]
            examples.append((p, r))
        nll, counts = [], []
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            width = max(len(p) + len(r) for p, r in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for i, (p, r) in enumerate(batch):
                seq = p + r
                ids[i, : len(seq)] = torch.tensor(seq)
                mask[i, : len(seq)] = 1
                labels[i, len(p) : len(seq)] = torch.tensor(r)
            with torch.no_grad():
                logits = model(
                    input_ids=ids.to(model.device), attention_mask=mask.to(model.device)
                ).logits.float()
            shift_logits, shift_labels = logits[:, :-1].cpu(), labels[:, 1:]
            losses = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), reduction="none"
            ).view(shift_labels.shape)
            scored = shift_labels != -100
            nll += (losses * scored).sum(dim=1).tolist()
            counts += scored.sum(dim=1).tolist()
        per_example = [math.exp(n / c) for n, c in zip(nll, counts, strict=True)]
        return {"perplexity": math.exp(sum(nll) / sum(counts)), "perplexities": per_example}
