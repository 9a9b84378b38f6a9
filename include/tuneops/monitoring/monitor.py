"""Monitoring of a served model over one window of the inference log and the feedback store.

Three groups of checks, each against thresholds from a monitoring config
(``configs/monitoring/*.yaml``):

- **drift**: the window's prompts against the training prompts of the version serving them
  (its ``tuneops.dataset_uri`` tag): PSI and the KS test on prompt length in characters
  and tokens, the share of words never seen in training (above the training set's own
  held-out rate), PSI of the output label mix (the template's first required key) and, when
  ``embedding_model`` names a local encoder, how far the mean prompt embedding moved;
- **health**: error, empty, refusal and format-valid rates, latency p95, outputs carrying
  PII, prompts that look like injection attempts;
- **feedback**: thumbs-up rate, corrections and the worst-rated examples.

Drift is judged only when a window has ``min_requests`` requests, feedback only with
``feedback.min_answers`` answers: a thin window is reported, not alarmed on. A breach of a
kind listed in ``retrain_on`` asks for retraining.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tuneops.config import MonitorConfig
from tuneops.contracts import DatasetManifest
from tuneops.core.drift import category_psi, label_of, oov_rate, psi, words
from tuneops.core.inference_log import read_feedback, read_log
from tuneops.core.lineage import dataset_uri_of
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore
from tuneops.core.templates import PromptTemplate
from tuneops.evaluation.formats import correction_problem
from tuneops.evaluation.safety import looks_like_injection

log = logging.getLogger(__name__)

REFUSAL = re.compile(
    r"\b(I'?m sorry|I am sorry|I can(?:not|'t) (?:help|assist|do that)|as an AI\b|I'?m unable|I am unable)",
    re.I,
)
WORST_EXAMPLES = 5


@dataclass(frozen=True)
class Reference:
    """What the training prompts look like: the numbers drift is measured against."""

    prompt_chars: list[int]
    prompt_tokens: list[int] | None
    vocab: frozenset[str]
    oov_rate: float  # of held-out training prompts against the rest: the rate unshifted traffic shows
    labels: Counter
    label_key: str | None
    source: str
    embedding_mean: list[float] | None = None
    embedding_std: list[float] | None = None


def build_reference(
    prompts: list[str],
    responses: list[str],
    label_key: str | None,
    count_tokens=None,
    source: str = "",
    holdout: float = 0.2,
    seed: int = 0,
    embed=None,
) -> Reference:
    """A ``Reference`` from training prompts and responses.

    ``count_tokens(text) -> int`` and ``embed(texts) -> array (n, d)`` are optional.
    """
    if len(prompts) < 10:
        raise ValueError(f"reference {source or ''} has {len(prompts)} prompts; drift needs at least 10")
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    cut = max(1, int(len(order) * holdout))
    held, kept = [prompts[i] for i in order[:cut]], [prompts[i] for i in order[cut:]]
    vocab = frozenset(w for p in kept for w in words(p))
    return Reference(
        prompt_chars=[len(p) for p in prompts],
        prompt_tokens=[count_tokens(p) for p in prompts] if count_tokens else None,
        vocab=vocab,
        oov_rate=oov_rate(held, vocab),
        labels=Counter(label_of(r, label_key) for r in responses) if label_key else Counter(),
        label_key=label_key,
        source=source,
        **_embedding_stats(embed(prompts) if embed else None),
    )


def _embedding_stats(vectors) -> dict:
    if vectors is None:
        return {}
    return {"embedding_mean": vectors.mean(axis=0).tolist(), "embedding_std": vectors.std(axis=0).tolist()}


def load_embedder(ref: str, store: ArtifactStore, batch_size: int = 32, max_tokens: int = 256):
    """``embed(texts) -> ndarray (n, hidden)``: mean-pooled last hidden states of a local model.

    ``ref`` is a base-model reference (``builtin:...``, ``imported:<name>``) or a folder with
    ``save_pretrained`` weights.
    """
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tuneops.models.base_model import resolve_base_model

    path = resolve_base_model(ref, store)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()

    def embed(texts: list[str]):
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_tokens,
            )
            with torch.no_grad():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            chunks.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
        return np.concatenate(chunks)

    return embed


def embedding_shift(reference: Reference, vectors) -> float:
    """How far the window's mean embedding moved, in reference standard deviations (RMS over dimensions).

    Calm windows of n requests sit near 1/sqrt(n) (sampling noise); a new topic moves it far more.
    """
    import numpy as np

    mean, std = np.asarray(reference.embedding_mean), np.asarray(reference.embedding_std)
    z = (np.asarray(vectors).mean(axis=0) - mean) / np.maximum(std, 1e-6)
    return float(np.sqrt(np.mean(z**2)))


def _check(kind: str, metric: str, value: float | None, op: str, threshold: float) -> dict:
    breached = value is not None and (value > threshold if op == "<=" else value < threshold)
    return {
        "kind": kind,
        "metric": metric,
        "value": value,
        "op": op,
        "threshold": threshold,
        "breached": breached,
    }


def drift_checks(
    reference: Reference, records: list[dict], cfg: MonitorConfig, count_tokens=None, embed=None
):
    """``(metrics, checks)`` of the window's prompts against ``reference``."""
    from scipy.stats import ks_2samp

    t = cfg.drift
    ok = [r for r in records if r.get("prompt") is not None]
    metrics: dict[str, float] = {}
    checks = []
    chars = [len(r["prompt"]) for r in ok]  # redacted, like the training prompts
    series = {"prompt_chars": (reference.prompt_chars, chars)}
    if reference.prompt_tokens is not None and count_tokens is not None:
        series["prompt_tokens"] = (reference.prompt_tokens, [count_tokens(r["prompt"]) for r in ok])
    for name, (ref, cur) in series.items():
        metrics[f"drift.{name}.psi"] = psi(ref, cur)
        metrics[f"drift.{name}.ks_pvalue"] = float(ks_2samp(ref, cur).pvalue)
        checks.append(_check("drift", f"drift.{name}.psi", metrics[f"drift.{name}.psi"], "<=", t.psi_max))
        checks.append(
            _check(
                "drift", f"drift.{name}.ks_pvalue", metrics[f"drift.{name}.ks_pvalue"], ">=", t.ks_pvalue_min
            )
        )
    window_oov = oov_rate([r["prompt"] for r in ok], reference.vocab)
    metrics["drift.oov_rate"] = window_oov
    metrics["drift.oov_increase"] = window_oov - reference.oov_rate
    checks.append(
        _check("drift", "drift.oov_increase", metrics["drift.oov_increase"], "<=", t.oov_increase_max)
    )
    if reference.embedding_mean is not None and embed is not None:
        shift = embedding_shift(reference, embed([r["prompt"] for r in ok]))
        metrics["drift.embedding_shift"] = shift
        checks.append(_check("drift", "drift.embedding_shift", shift, "<=", t.embedding_shift_max))
    if reference.label_key:
        labels = Counter(label_of(r.get("response") or "", reference.label_key) for r in ok)
        metrics["drift.label_psi"] = category_psi(reference.labels, labels)
        checks.append(_check("drift", "drift.label_psi", metrics["drift.label_psi"], "<=", t.label_psi_max))
    return metrics, checks


def user_text(record: dict) -> str:
    """What the caller wrote: the template fields when sent, else the prompt (templates are not scanned)."""
    inputs = record.get("inputs")
    return "\n".join(str(v) for v in inputs.values()) if inputs else record.get("prompt") or ""


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def health_checks(records: list[dict], cfg: MonitorConfig, template: PromptTemplate | None = None):
    """``(metrics, checks)``: error, empty, refusal, format, PII-leak and injection rates, latency."""
    t = cfg.health
    n = len(records)
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    latencies = [r["latency_s"] for r in ok]
    metrics = {
        "health.error_rate": (n - len(ok)) / n,
        "health.empty_rate": sum(not r["response"].strip() for r in ok) / max(len(ok), 1),
        "health.refusal_rate": sum(bool(REFUSAL.search(r["response"])) for r in ok) / max(len(ok), 1),
        "health.pii_leak_rate": sum(bool(r.get("pii_in_response")) for r in ok) / max(len(ok), 1),
        "health.injection_rate": sum(looks_like_injection(user_text(r)) for r in records) / n,
        "health.latency_p50_s": _quantile(latencies, 0.5) if latencies else 0.0,
        "health.latency_p95_s": _quantile(latencies, 0.95) if latencies else 0.0,
    }
    if template is not None and template.output is not None:
        metrics["health.format_valid"] = sum(
            not correction_problem(r["response"], template) for r in ok
        ) / max(len(ok), 1)
    checks = [
        _check("health", "health.error_rate", metrics["health.error_rate"], "<=", t.error_rate_max),
        _check("health", "health.empty_rate", metrics["health.empty_rate"], "<=", t.empty_rate_max),
        _check("health", "health.refusal_rate", metrics["health.refusal_rate"], "<=", t.refusal_rate_max),
        _check("health", "health.pii_leak_rate", metrics["health.pii_leak_rate"], "<=", t.pii_leak_rate_max),
        _check(
            "health", "health.injection_rate", metrics["health.injection_rate"], "<=", t.injection_rate_max
        ),
        _check("health", "health.latency_p95_s", metrics["health.latency_p95_s"], "<=", t.latency_p95_max_s),
    ]
    if "health.format_valid" in metrics:
        checks.append(
            _check("health", "health.format_valid", metrics["health.format_valid"], ">=", t.format_valid_min)
        )
    return metrics, checks


def feedback_checks(answers: list[dict], cfg: MonitorConfig):
    """``(metrics, checks, worst)``: thumbs-up rate, correction count and the worst-rated examples."""
    n = len(answers)
    metrics = {
        "feedback.answers": float(n),
        "feedback.corrections": float(sum(bool(a.get("correction")) for a in answers)),
    }
    checks = []
    if n:
        metrics["feedback.thumbs_up_rate"] = sum(a["rating"] == "up" for a in answers) / n
    if n >= cfg.feedback.min_answers:
        checks.append(
            _check(
                "feedback",
                "feedback.thumbs_up_rate",
                metrics["feedback.thumbs_up_rate"],
                ">=",
                cfg.feedback.thumbs_up_rate_min,
            )
        )
    down = [a for a in answers if a["rating"] == "down"]
    # Corrected and commented answers first: they say what was wrong.
    down.sort(key=lambda a: (not a.get("correction"), not a.get("comment"), a["ts"]))
    worst = [
        {
            "request_id": a["request_id"],
            "prompt": (a["request"].get("prompt") or "")[-300:],
            "response": a["request"].get("response"),
            "correction": a.get("correction"),
            "comment": a.get("comment"),
        }
        for a in down[:WORST_EXAMPLES]
    ]
    return metrics, checks, worst


def assess_window(
    records: list[dict],
    answers: list[dict],
    cfg: MonitorConfig,
    reference: Reference | None,
    template: PromptTemplate | None = None,
    count_tokens=None,
    embed=None,
) -> dict:
    """Every metric and check of one window; ``breaches`` and ``retrain`` say what to act on."""
    result = {
        "requests": len(records),
        "metrics": {"requests": float(len(records))},
        "checks": [],
        "notes": [],
    }
    if records:
        metrics, checks = health_checks(records, cfg, template)
        result["metrics"].update(metrics)
        result["checks"] += checks
    if reference is None:
        result["notes"].append(
            "drift not measured: no reference (the version has no tuneops.dataset_uri tag)"
        )
    elif len(records) < cfg.min_requests:
        result["notes"].append(
            f"drift not judged: {len(records)} requests, fewer than min_requests={cfg.min_requests}"
        )
        if records:
            result["metrics"].update(drift_checks(reference, records, cfg, count_tokens, embed)[0])
    else:
        metrics, checks = drift_checks(reference, records, cfg, count_tokens, embed)
        result["metrics"].update(metrics)
        result["checks"] += checks
    metrics, checks, worst = feedback_checks(answers, cfg)
    result["metrics"].update(metrics)
    result["checks"] += checks
    result["worst_feedback"] = worst
    if answers and not checks:
        result["notes"].append(
            f"feedback not judged: {len(answers)} answers, fewer than feedback.min_answers={cfg.feedback.min_answers}"
        )
    result["breaches"] = [c for c in result["checks"] if c["breached"]]
    result["retrain"] = any(b["kind"] in cfg.retrain_on for b in result["breaches"])
    return result


# --- the scheduled job -------------------------------------------------------------------


def load_reference(
    model_name: str, version: str, cfg: MonitorConfig, settings: Settings, store: ArtifactStore, embed=None
):
    """The reference of ``model_name`` v``version`` from its training prompt dataset, with its tokenizer.

    Returns ``(reference, template, count_tokens)``; ``reference`` is None when the version
    has no dataset lineage tag.
    """
    from tuneops.data.prompts import load_prompt_dataset
    from tuneops.models.base_model import resolve_tokenizer
    from tuneops.registry.registry import registry_client

    tags = registry_client(settings).get_model_version(model_name, version).tags
    dataset_uri = dataset_uri_of(tags)
    if not dataset_uri:
        return None, None, None
    folder = store.fetch_dir(store.key_of(dataset_uri))
    manifest = DatasetManifest.load(folder)
    template = PromptTemplate.model_validate(manifest.template)
    train = load_prompt_dataset(folder)["train"]
    rows = random.Random(0).sample(range(len(train)), min(cfg.reference_rows, len(train)))
    count_tokens = None
    if manifest.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer(manifest.tokenizer, store))
        special = manifest.add_special_tokens

        def count_tokens(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=special)["input_ids"])

    label_key = (
        template.output.required_keys[0] if template.output and template.output.required_keys else None
    )
    reference = build_reference(
        [train[i]["prompt"] for i in rows],
        [train[i]["response"] for i in rows],
        label_key,
        count_tokens,
        source=dataset_uri,
        embed=embed,
    )
    return reference, template, count_tokens


def run_monitor(
    config: MonitorConfig, window_end: datetime | None = None, settings: Settings | None = None
) -> dict:
    """Assess ``[window_end - window_hours, window_end)``: store the report, log MLflow metrics, return the verdict.

    With ``config.embedding_model`` set, that local encoder is loaded here and the window's
    prompts are embedded for ``drift.embedding_shift``.

    Returns ``{"window_start", "window_end", "requests", "version", "metrics", "breaches",
    "retrain", "notes", "report_uri"}`` (small enough for XCom).
    """
    from tuneops.monitoring.report import render_monitor_report

    settings = settings or load_settings()
    store = ArtifactStore.from_settings(settings)
    end = window_end or datetime.now(UTC)
    start = end - timedelta(hours=config.window_hours)
    records = [r for r in read_log(store, start, end) if r.get("model") == config.model_name]
    answers = [a for a in read_feedback(store, start, end) if a["request"].get("model") == config.model_name]
    versions = Counter(r["version"] for r in records)
    version = versions.most_common(1)[0][0] if versions else None
    reference = template = count_tokens = embed = None
    if version is not None:
        if config.embedding_model:
            embed = load_embedder(config.embedding_model, store)
        reference, template, count_tokens = load_reference(
            config.model_name, version, config, settings, store, embed
        )
    result = assess_window(records, answers, config, reference, template, count_tokens, embed)
    stamp = f"{end:%Y-%m-%dT%H%M%S}"
    key = f"monitoring/{config.model_name}/{stamp}"
    history = _history(store, config.model_name, stamp)
    summary = {
        "model": config.model_name,
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "requests": len(records),
        "versions": dict(versions),
        "version": version,
        "metrics": result["metrics"],
        "breaches": result["breaches"],
        "retrain": result["retrain"],
        "notes": result["notes"],
        "checks": result["checks"],
        "worst_feedback": result["worst_feedback"],
    }
    report = render_monitor_report(summary, history, reference, records, count_tokens)
    store.write_bytes(
        f"{key}/metrics.json", json.dumps(summary, indent=1, sort_keys=True, default=str).encode()
    )
    summary["report_uri"] = store.write_bytes(f"{key}/report.html", report.encode())
    _log_to_mlflow(config.model_name, end, summary, report, settings)
    for note in result["notes"]:
        log.info("%s", note)
    log.info(
        "monitoring %s %s..%s: %d requests, %d breaches%s; report %s",
        config.model_name,
        start,
        end,
        len(records),
        len(result["breaches"]),
        " (retrain)" if result["retrain"] else "",
        summary["report_uri"],
    )
    return {
        k: summary[k]
        for k in (
            "window_start",
            "window_end",
            "requests",
            "version",
            "metrics",
            "breaches",
            "retrain",
            "notes",
            "report_uri",
        )
    }


def _history(store: ArtifactStore, model_name: str, before: str, windows: int = 48) -> list[dict]:
    """The metrics of up to ``windows`` earlier windows, oldest first, for the trend plot."""
    keys = [k for k in store.list_objects(f"monitoring/{model_name}") if k.endswith("/metrics.json")]
    earlier = [k for k in keys if k.split("/")[-2] < before][-windows:]
    return [json.loads(store.read_bytes(k)) for k in earlier]


def _log_to_mlflow(model_name: str, end: datetime, summary: dict, report: str, settings: Settings) -> None:
    """Metrics go to one long-lived run per model (step = window hour), so trends read as curves."""
    import mlflow

    from tuneops.core.tracking import configure_mlflow

    experiment_id = configure_mlflow(settings)
    runs = mlflow.search_runs(
        [experiment_id], filter_string=f"tags.`tuneops.monitor_model` = '{model_name}'", output_format="list"
    )
    run_id = runs[0].info.run_id if runs else None
    tags = {"tuneops.kind": "monitoring", "tuneops.monitor_model": model_name}
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else f"monitor-{model_name}", tags=tags):
        step = int(end.timestamp() // 3600)
        metrics = {k.replace("@", "_"): float(v) for k, v in summary["metrics"].items() if v is not None}
        metrics["breaches"] = float(len(summary["breaches"]))
        mlflow.log_metrics(metrics, step=step, timestamp=int(end.timestamp() * 1000))
        mlflow.log_text(report, f"windows/{end:%Y-%m-%dT%H%M%S}/report.html")
