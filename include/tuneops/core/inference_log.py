"""The inference log and the feedback store, in the artifact store.

Every served request becomes one record under ``inference_log/dt=<day>/hour=<hh>/``
(JSONL objects, one per flush: S3 has no append), with PII redacted before it is written;
which PII kinds were found is kept so monitoring can count leaks. Feedback is one JSON
object per answer under ``feedback/dt=<day>/hour=<hh>/``, carrying the request it rates.
``llmops_monitor`` reads both.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta

from tuneops.core.pii import redact
from tuneops.core.store import ArtifactStore

log = logging.getLogger(__name__)
LOG_PREFIX = "inference_log"
FEEDBACK_PREFIX = "feedback"


def _partition(prefix: str, ts: datetime) -> str:
    return f"{prefix}/dt={ts:%Y-%m-%d}/hour={ts:%H}"


def log_record(
    *,
    request_id: str,
    model: str,
    version: str | None,
    prompt: str,
    response: str,
    latency_s: float,
    inputs: dict | None = None,
    mode: str | None = "prompt",
    variant: str = "merged",
    alias: str = "champion",
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    error: str | None = None,
    status_code: int | None = None,
    prompt_chars: int | None = None,
    ts: datetime | None = None,
) -> dict:
    """One inference-log record, PII redacted (the kinds found are kept in ``pii_in_*``).

    A request that failed has ``error`` (and ``status: "error"``); ``status_code`` is the HTTP
    status it got. ``version`` is None when no model was loaded; ``prompt_chars`` defaults to
    ``len(prompt)`` (a refused prompt may be logged cut short).
    """
    prompt_redacted, prompt_pii = redact(prompt)
    response_redacted, response_pii = redact(response)
    inputs_redacted = (
        {k: redact(v)[0] if isinstance(v, str) else v for k, v in inputs.items()} if inputs else None
    )
    return {
        "request_id": request_id,
        "ts": (ts or datetime.now(UTC)).isoformat(),
        "model": model,
        "version": None if version is None else str(version),
        "variant": variant,
        "alias": alias,
        "mode": mode,
        "prompt": prompt_redacted,
        "inputs": inputs_redacted,
        "response": response_redacted,
        "prompt_chars": len(prompt) if prompt_chars is None else prompt_chars,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "latency_s": round(latency_s, 5),
        "status": "error" if error else "ok",
        "error": error,
        "status_code": status_code,
        "pii_in_prompt": sorted(prompt_pii),
        "pii_in_response": sorted(response_pii),
    }


def log_requests(records: list[dict], store: ArtifactStore) -> list[str]:
    """Write ``records`` as one JSONL object per hour partition of their ``ts``; returns the URIs."""
    by_hour: dict[str, list[dict]] = {}
    for rec in records:
        by_hour.setdefault(_partition(LOG_PREFIX, datetime.fromisoformat(rec["ts"])), []).append(rec)
    return [
        store.write_bytes(
            f"{part}/{uuid.uuid4().hex}.jsonl",
            "".join(json.dumps(r, sort_keys=True) + "\n" for r in recs).encode(),
        )
        for part, recs in sorted(by_hour.items())
    ]


def _hours(start: datetime, end: datetime):
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield hour
        hour += timedelta(hours=1)


def _read_partitions(
    store: ArtifactStore, prefix: str, start: datetime, end: datetime, suffix: str
) -> list[dict]:
    records = []
    for hour in _hours(start, end):
        for key in store.list_objects(_partition(prefix, hour)):
            if not key.endswith(suffix):
                continue
            for line in store.read_bytes(key).decode().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    if start <= datetime.fromisoformat(rec["ts"]) < end:
                        records.append(rec)
    return sorted(records, key=lambda r: r["ts"])


def read_log(store: ArtifactStore, start: datetime, end: datetime) -> list[dict]:
    """Every logged request with ``start <= ts < end``, oldest first (reads only those hours)."""
    return _read_partitions(store, LOG_PREFIX, start, end, ".jsonl")


def find_request(store: ArtifactStore, request_id: str, days: int = 7) -> dict | None:
    """The logged request ``request_id`` from the last ``days`` days, or None."""
    end = datetime.now(UTC) + timedelta(hours=1)
    for rec in reversed(read_log(store, end - timedelta(days=days), end)):
        if rec["request_id"] == request_id:
            return rec
    return None


class InferenceLog:
    """Buffers records and writes them every ``flush_seconds`` (and on ``stop``/``flush``)."""

    def __init__(self, store: ArtifactStore, flush_seconds: float = 2.0):
        self.store = store
        self.flush_seconds = flush_seconds
        self._buffer: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def append(self, record: dict) -> None:
        with self._lock:
            self._buffer.append(record)

    def flush(self) -> None:
        with self._lock:
            records, self._buffer = self._buffer, []
        if records:
            try:
                log_requests(records, self.store)
            except Exception:
                with self._lock:  # keep them for the next flush rather than lose them
                    self._buffer = records + self._buffer
                raise

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:
                log.exception("writing the inference log failed; will retry")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()


def write_feedback(store: ArtifactStore, request: dict, answer: dict, now: datetime | None = None) -> dict:
    """Store one feedback answer (rating, correction, comment) with the request it rates.

    Returns ``{"feedback_id", "uri"}``. The correction and comment are PII redacted.
    """
    now = now or datetime.now(UTC)
    feedback_id = uuid.uuid4().hex
    record = {
        "feedback_id": feedback_id,
        "ts": now.isoformat(),
        "request_id": answer["request_id"],
        "rating": answer["rating"],
        "correction": redact(answer["correction"])[0] if answer.get("correction") else None,
        "comment": redact(answer["comment"])[0] if answer.get("comment") else None,
        "request": {
            k: request.get(k) for k in ("model", "version", "mode", "prompt", "inputs", "response", "ts")
        },
    }
    uri = store.write_bytes(
        f"{_partition(FEEDBACK_PREFIX, now)}/{feedback_id}.json", json.dumps(record).encode()
    )
    return {"feedback_id": feedback_id, "uri": uri}


def read_feedback(store: ArtifactStore, start: datetime, end: datetime) -> list[dict]:
    """Every feedback answer with ``start <= ts < end``, oldest first."""
    return _read_partitions(store, FEEDBACK_PREFIX, start, end, ".json")
