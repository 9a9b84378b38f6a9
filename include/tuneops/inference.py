"""Generate with the registry's champion and append every request to the inference log.

The log lives in the artifact store under ``inference_log/dt=<day>/hour=<hh>/<id>.jsonl``,
one object per call (S3 has no append), and is what ``llmops_monitor`` reads.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

from tuneops.settings import Settings, load_settings
from tuneops.store import ArtifactStore

LOG_PREFIX = "inference_log"


def log_requests(records: list[dict], store: ArtifactStore, now: datetime | None = None) -> str:
    """Write ``records`` as one JSONL object in the hour partition of ``now``; returns its URI."""
    now = now or datetime.now(UTC)
    key = f"{LOG_PREFIX}/dt={now:%Y-%m-%d}/hour={now:%H}/{uuid.uuid4().hex}.jsonl"
    return store.write_bytes(key, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())


def read_log(store: ArtifactStore, start: datetime, end: datetime) -> list[dict]:
    """Every logged request with ``start <= ts < end``."""
    records = []
    for key in store.list_objects(LOG_PREFIX):
        if not key.endswith(".jsonl"):
            continue
        for line in store.read_bytes(key).decode().splitlines():
            rec = json.loads(line)
            ts = datetime.fromisoformat(rec["ts"])
            if start <= ts < end:
                records.append(rec)
    return records


def generate_with_champion(inputs: list, model_name: str, alias: str = "champion", settings: Settings | None = None) -> list[dict]:
    """Generate for prompt strings or template-field records with ``models:/<name>@<alias>``; logs each request."""
    import mlflow

    from tuneops.mlflow_utils import configure_mlflow
    from tuneops.registry import alias_version

    settings = settings or load_settings()
    configure_mlflow(settings)
    version = alias_version(model_name, alias, settings)
    if version is None:
        raise ValueError(f"model {model_name!r} has no '{alias}' alias yet; run llmops_finetune first")
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version.version}")
    started = time.monotonic()
    outputs = model.predict(inputs)
    latency = (time.monotonic() - started) / max(len(inputs), 1)
    now = datetime.now(UTC)
    records = [
        {
            "request_id": uuid.uuid4().hex,
            "ts": now.isoformat(),
            "model": model_name,
            "version": str(version.version),
            "prompt_chars": len(inp if isinstance(inp, str) else json.dumps(inp)),
            "response": out,
            "latency_s": round(latency, 4),
        }
        for inp, out in zip(inputs, outputs, strict=True)
    ]
    log_requests(records, ArtifactStore.from_settings(settings), now)
    return records
