"""Evaluate models on the same examples with ``evaluate`` metrics shipped in the project.

Base model, candidate and champion are all scored on the first ``max_examples`` rows of the
test split. Results are cached in the artifact store under a hash of the model fingerprint,
the dataset version and the eval settings, so a rerun does not generate again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tuneops.config import EvalConfig
from tuneops.hashing import hash_json
from tuneops.store import ArtifactStore

log = logging.getLogger(__name__)
METRICS_DIR = Path(__file__).parent / "metrics"
METRIC_NAMES = ("rouge1", "rouge2", "rougeL", "bleu", "exact_match")


class EvaluationError(RuntimeError):
    """Evaluation could not produce trustworthy metrics (empty set, failed generation, NaN)."""


@dataclass(frozen=True)
class ModelRef:
    """A model to evaluate: weights at ``path`` plus an optional LoRA adapter; ``fingerprint`` names it."""

    role: str
    fingerprint: str
    path: str
    adapter_dir: str | None = None


def load_metric(name: str):
    """Load a metric module shipped under ``tuneops/metrics/<name>`` by path (works offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    import evaluate

    return evaluate.load(str(METRICS_DIR / name))


def compute_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L, BLEU and exact match of ``predictions`` against ``references``."""
    if not predictions:
        raise EvaluationError("no examples to score: the evaluation set is empty")
    scores = dict(load_metric("rouge").compute(predictions=predictions, references=references))
    scores.update(load_metric("bleu").compute(predictions=predictions, references=references))
    scores["exact_match"] = sum(
        p.strip() == r.strip() for p, r in zip(predictions, references, strict=True)
    ) / len(predictions)
    return {k: float(scores[k]) for k in METRIC_NAMES}


def evaluate_model(
    ref: ModelRef, dataset_dir: Path, dataset_version: str, cfg: EvalConfig, store: ArtifactStore
) -> dict:
    """Metrics of ``ref`` on the test split; returns ``{"role", "fingerprint", "metrics", "n", "uri"}``.

    Raises EvaluationError when the test split is empty or a metric comes out NaN.
    """
    from tuneops.generation import generate, load_model
    from tuneops.prompts import load_prompt_dataset

    key = (
        "evaluations/"
        + hash_json({"model": ref.fingerprint, "dataset": dataset_version, "eval": cfg.model_dump()})[:20]
    )
    if store.exists(key):
        result = json.loads((store.fetch_dir(key) / "metrics.json").read_text())
        log.info("%s: reusing evaluation %s", ref.role, store.uri(key))
        return {**result, "role": ref.role, "uri": store.uri(key)}

    test = load_prompt_dataset(dataset_dir)["test"]
    rows = test.select(range(min(cfg.max_examples, len(test))))
    if len(rows) == 0:
        raise EvaluationError(
            f"dataset {dataset_version} has an empty test split; nothing to evaluate, so nothing is promoted"
        )
    manifest = json.loads((Path(dataset_dir) / "manifest.json").read_text())
    special = manifest.get("add_special_tokens", True)
    model, tokenizer = load_model(ref.path, ref.adapter_dir)
    try:
        predictions = generate(
            model, tokenizer, list(rows["prompt"]), cfg.max_new_tokens, cfg.batch_size, special
        )
    except Exception as exc:
        raise EvaluationError(f"generation failed for the {ref.role} model: {exc}") from exc
    references = list(rows["response"])
    if manifest.get("template_format") == "chat":
        # Chat replies end in the template's end-of-turn token, which decoding skips.
        references = [
            tokenizer.decode(
                tokenizer(r, add_special_tokens=False)["input_ids"], skip_special_tokens=True
            ).strip()
            for r in references
        ]
    metrics = compute_metrics(predictions, references)
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise EvaluationError(f"{ref.role} metrics {bad} are not finite; refusing to gate on them")
    result = {
        "fingerprint": ref.fingerprint,
        "metrics": metrics,
        "n": len(rows),
        "dataset_version": dataset_version,
    }
    with tempfile.TemporaryDirectory() as tmp:
        import pandas as pd

        (Path(tmp) / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True))
        pd.DataFrame(
            {"id": rows["id"], "prompt": rows["prompt"], "reference": references, "prediction": predictions}
        ).to_parquet(Path(tmp) / "predictions.parquet", index=False)
        uri = store.publish_dir(Path(tmp), key)
    log.info("%s on %d examples: %s", ref.role, len(rows), {k: round(v, 4) for k, v in metrics.items()})
    return {**result, "role": ref.role, "uri": uri}
