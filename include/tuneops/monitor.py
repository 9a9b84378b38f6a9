"""Basic health statistics over a window of the inference log (the first monitoring step)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from tuneops.inference import read_log
from tuneops.settings import Settings, load_settings
from tuneops.store import ArtifactStore

log = logging.getLogger(__name__)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def inference_stats(records: list[dict]) -> dict:
    """Request count, prompt size, latency p50/p95 and empty-response rate of ``records``."""
    if not records:
        return {"requests": 0}
    latencies = [r["latency_s"] for r in records]
    return {
        "requests": len(records),
        "versions": sorted({r["version"] for r in records}),
        "prompt_chars_mean": sum(r["prompt_chars"] for r in records) / len(records),
        "latency_p50_s": _quantile(latencies, 0.5),
        "latency_p95_s": _quantile(latencies, 0.95),
        "empty_response_rate": sum(not r["response"].strip() for r in records) / len(records),
    }


def run_monitor(window_end: datetime | None = None, window_hours: int = 1, settings: Settings | None = None) -> dict:
    """Compute stats for ``[window_end - window_hours, window_end)``, store them and log to MLflow."""
    import mlflow

    from tuneops.mlflow_utils import configure_mlflow

    settings = settings or load_settings()
    store = ArtifactStore.from_settings(settings)
    end = window_end or datetime.now(UTC)
    start = end - timedelta(hours=window_hours)
    stats = {"window_start": start.isoformat(), "window_end": end.isoformat(), **inference_stats(read_log(store, start, end))}
    stats["uri"] = store.write_json(f"monitoring/{end:%Y-%m-%dT%H%M%S}", stats)
    configure_mlflow(settings)
    with mlflow.start_run(run_name=f"monitor-{end:%Y-%m-%dT%H:%M}", tags={"tuneops.kind": "monitoring"}):
        mlflow.log_metrics({k: float(v) for k, v in stats.items() if isinstance(v, int | float)})
    log.info("monitoring %s..%s: %s", start, end, stats)
    return stats
