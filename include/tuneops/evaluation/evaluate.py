"""Evaluate models on the same examples with ``evaluate`` metric modules shipped in the project.

Base model, candidate and champion are all scored on the first ``max_examples`` rows of each
evaluated split (``test`` and the pinned ``golden`` set) and on the safety suite, with the
recipe's decoding settings. Metrics are flat names: ``test.rougeL``, ``golden.format_valid``,
``safety.pass_rate``. Per-example outputs go to Parquet beside ``metrics.json``, and results
are cached in the artifact store under a hash of the model fingerprint, the dataset version,
the eval settings and the safety suite, so a rerun does not generate again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tuneops.config import EvalConfig, SafetySuite
from tuneops.contracts import DatasetManifest
from tuneops.core.hashing import hash_json
from tuneops.core.store import ArtifactStore
from tuneops.core.templates import PromptTemplate

log = logging.getLogger(__name__)
METRICS_DIR = Path(__file__).parent / "metrics"
EVAL_VERSION = 2  # bump when metrics change meaning, so cached evaluations are not reused


class EvaluationError(RuntimeError):
    """Evaluation could not produce trustworthy metrics (empty set, failed generation, NaN)."""


@dataclass(frozen=True)
class ModelRef:
    """A model to evaluate: weights at ``path`` plus an optional LoRA adapter; ``fingerprint`` names it."""

    role: str
    fingerprint: str
    path: str
    adapter_dir: str | None = None
    quantize: str | None = None  # a served variant (``int8``); the fingerprint must say so too


@contextlib.contextmanager
def load_separately(ref: ModelRef) -> Iterator[tuple]:
    """``(model, tokenizer)`` for ``ref`` on its own: its adapter merged, quantized as it says."""
    from tuneops.models.generation import load_model

    yield load_model(ref.path, ref.adapter_dir, quantize=ref.quantize)


class SharedBase:
    """One base model in memory for several evaluations; adapters are swapped onto it.

    ``loader(ref)`` gives the base itself for a ref without an adapter, and for one with an adapter on
    this base, the adapter loaded by name (peft keeps several on one model), merged into the weights
    for the evaluation (what serving's merged model computes) and unmerged after it. A ref on another
    base, or a quantized one, is loaded separately. The base is loaded on first use, so evaluations
    reused from the store load nothing. Unmerging subtracts what merging added, which in fp32 leaves
    the base within rounding of itself (a last-bit difference, not a different model); keeping a copy
    of every adapted weight instead would double the memory of the layers LoRA touches. Evaluate the
    base first (``evaluate_models`` does) and it is scored on the untouched weights.
    """

    def __init__(self, base_path: str):
        self.base_path = base_path
        self.model = None
        self.tokenizer = None

    @contextlib.contextmanager
    def loader(self, ref: ModelRef) -> Iterator[tuple]:
        if ref.path != self.base_path or ref.quantize:
            with load_separately(ref) as loaded:
                yield loaded
            return
        if self.model is None:
            from tuneops.models.generation import load_model

            self.model, self.tokenizer = load_model(self.base_path)
        if ref.adapter_dir is None:
            with self._without_adapters():
                yield self.model, self.tokenizer
            return
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            self.model = PeftModel.from_pretrained(self.model, ref.adapter_dir, adapter_name=ref.role)
        elif ref.role not in self.model.peft_config:
            self.model.load_adapter(ref.adapter_dir, adapter_name=ref.role)
        self.model.set_adapter(ref.role)
        self.model.merge_adapter()
        try:
            yield self.model, self.tokenizer
        finally:
            self.model.unmerge_adapter()

    @contextlib.contextmanager
    def _without_adapters(self):
        from peft import PeftModel

        if isinstance(self.model, PeftModel):
            with self.model.disable_adapter():
                yield
        else:
            yield


def load_metric(name: str):
    """Load a metric module shipped under ``tuneops/metrics/<name>`` by path (works offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    import evaluate

    return evaluate.load(str(METRICS_DIR / name))


def compute_metrics(
    predictions: list[str], references: list[str], template: PromptTemplate | None = None
) -> tuple[dict[str, float], dict[str, list]]:
    """ROUGE-1/2/L, BLEU, exact match and (when ``template`` promises a structure) format validity.

    Returns ``(metrics, per_example)``; per_example holds ``exact_match`` and ``format_problem`` lists.
    """
    if not predictions:
        raise EvaluationError("no examples to score: the evaluation set is empty")
    scores = dict(load_metric("rouge").compute(predictions=predictions, references=references))
    scores.update(load_metric("bleu").compute(predictions=predictions, references=references))
    exact = load_metric("exact_match").compute(predictions=predictions, references=references)
    scores["exact_match"] = exact["exact_match"]
    per_example = {"exact_match": exact["matches"]}
    if template is not None and template.output is not None:
        fmt = load_metric("json_format").compute(
            predictions=predictions, required_keys=template.output.required_keys
        )
        scores["format_valid"] = fmt["format_valid"]
        per_example["format_problem"] = fmt["problems"]
    return {k: float(v) for k, v in scores.items()}, per_example


def eval_key(ref: ModelRef, dataset_version: str, cfg: EvalConfig, suite: SafetySuite) -> str:
    spec = {
        "model": ref.fingerprint,
        "dataset": dataset_version,
        "eval": cfg.model_dump(),
        "suite": suite.model_dump(),
        "version": EVAL_VERSION,
    }
    return "evaluations/" + hash_json(spec)[:20]


def evaluate_model(
    ref: ModelRef,
    dataset_dir: Path,
    dataset_version: str,
    cfg: EvalConfig,
    suite: SafetySuite,
    store: ArtifactStore,
    loader: Callable[[ModelRef], contextlib.AbstractContextManager[tuple]] = load_separately,
) -> dict:
    """Metrics of ``ref``; returns ``{"role", "fingerprint", "metrics", "n", "uri"}``.

    ``loader(ref)`` is a context manager giving ``(model, tokenizer)`` (``SharedBase.loader`` shares
    one base among several refs); it is entered only when the evaluation is not already published.
    ``n`` counts examples per split and probes. Raises EvaluationError when a requested split
    is missing or empty, when generation fails, or when a metric comes out NaN.
    """
    from tuneops.data.prompts import load_prompt_dataset

    key = eval_key(ref, dataset_version, cfg, suite)
    if store.exists(key):
        result = json.loads((store.fetch_dir(key) / "metrics.json").read_text())
        log.info("%s: reusing evaluation %s", ref.role, store.uri(key))
        return {**result, "role": ref.role, "uri": store.uri(key)}

    dataset = load_prompt_dataset(dataset_dir)
    manifest = DatasetManifest.load(dataset_dir)
    template = PromptTemplate.model_validate(manifest.template)
    special = manifest.add_special_tokens
    splits = {}
    for split in cfg.splits:
        if split not in dataset:
            if split == "test":
                raise EvaluationError(f"dataset {dataset_version} has no test split; nothing to evaluate")
            log.warning(
                "dataset %s has no %s split (no golden file in its config); skipping it",
                dataset_version,
                split,
            )
            continue
        if len(dataset[split]) == 0:
            raise EvaluationError(
                f"dataset {dataset_version} has an empty {split} split; nothing to evaluate, so nothing is promoted"
            )
        splits[split] = dataset[split].select(range(min(cfg.max_examples, len(dataset[split]))))

    with loader(ref) as (model, tokenizer):
        metrics, tables, n, safety_rows = _score(ref, model, tokenizer, splits, suite, template, cfg, special)
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        raise EvaluationError(f"{ref.role} metrics {bad} are not finite; refusing to gate on them")
    result = {
        "fingerprint": ref.fingerprint,
        "metrics": metrics,
        "n": n,
        "dataset_version": dataset_version,
        "safety_suite": suite.id,
    }
    with tempfile.TemporaryDirectory() as tmp:
        import pandas as pd

        (Path(tmp) / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True))
        for split, table in tables.items():
            pd.DataFrame(table).to_parquet(Path(tmp) / f"{split}.parquet", index=False)
        pd.DataFrame(safety_rows).to_parquet(Path(tmp) / "safety.parquet", index=False)
        uri = store.publish_dir(Path(tmp), key)
    shown = {
        k: round(v, 4)
        for k, v in metrics.items()
        if k.endswith(("rougeL", "format_valid", "perplexity", "safety.pass_rate"))
    }
    log.info("%s on %s: %s", ref.role, n, shown)
    return {**result, "role": ref.role, "uri": uri}


def _score(
    ref: ModelRef, model, tokenizer, splits: dict, suite: SafetySuite, template, cfg: EvalConfig, special
):
    """Generate and score every split and the safety suite with one loaded model."""
    from tuneops.evaluation.safety import probe_prompts, score
    from tuneops.models.generation import generate

    def run(prompts: list[str], what: str) -> list[str]:
        try:
            return generate(
                model, tokenizer, prompts, cfg.max_new_tokens, cfg.batch_size, special, decoding=cfg.decoding
            )
        except Exception as exc:
            raise EvaluationError(f"generation failed for the {ref.role} model on {what}: {exc}") from exc

    metrics: dict[str, float] = {}
    tables = {}
    n = {}
    for split, rows in splits.items():
        predictions = run(list(rows["prompt"]), f"the {split} split")
        references = [_visible(r, tokenizer, template) for r in rows["response"]]
        scores, per_example = compute_metrics(predictions, references, template)
        ppl = load_metric("perplexity").compute(
            predictions=list(rows["response"]),
            prompts=list(rows["prompt"]),
            model=model,
            tokenizer=tokenizer,
            batch_size=cfg.batch_size,
            add_special_tokens=special,
        )
        scores["perplexity"] = ppl["perplexity"]
        metrics.update({f"{split}.{k}": v for k, v in scores.items()})
        n[split] = len(rows)
        tables[split] = {
            "id": rows["id"],
            "prompt": rows["prompt"],
            "reference": references,
            "prediction": predictions,
            "exact_match": per_example["exact_match"],
            "format_problem": per_example.get("format_problem", [""] * len(rows)),
            "perplexity": ppl["perplexities"],
        }
    outputs = run(probe_prompts(suite, template, tokenizer), f"safety suite {suite.id}")
    safety_metrics, safety_rows = score(suite, template, outputs)
    metrics.update(safety_metrics)
    n["safety"] = len(safety_rows)
    return metrics, tables, n, safety_rows


def _visible(reference: str, tokenizer, template: PromptTemplate) -> str:
    """The reference as decoding shows it: chat replies end in an end-of-turn token that decoding skips."""
    if template.format != "chat":
        return reference
    ids = tokenizer(reference, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def read_outputs(uri: str, store: ArtifactStore) -> dict:
    """The per-example tables of a published evaluation: ``{"test": DataFrame, ..., "safety": DataFrame}``."""
    import pandas as pd

    folder = store.fetch_dir(store.key_of(uri))
    return {p.stem: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}
