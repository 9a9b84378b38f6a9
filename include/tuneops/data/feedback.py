"""Human corrections from ``/feedback`` become training data.

Every correction not exported yet is written, in the dataset's landing format (its raw
column names), to ``landing/feedback/<dataset>/<hash>.jsonl``, beside a
``.lineage.json`` naming the feedback and request ids. The batch then goes through
validation and prompt building like any other; record ids are ``feedback-<feedback id>``,
so the prompt dataset's manifest lists which feedback made it in.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

from tuneops.config import ConfigError, load_dataset_config
from tuneops.core.hashing import hash_json
from tuneops.core.inference_log import read_feedback
from tuneops.core.lineage import FEEDBACK_ID_PREFIX
from tuneops.core.settings import Settings, load_settings
from tuneops.core.store import ArtifactStore

log = logging.getLogger(__name__)
LANDING_PREFIX = "landing/feedback"


def _exported_ids(store: ArtifactStore, dataset: str) -> set[str]:
    ids: set[str] = set()
    for key in store.list_objects(f"{LANDING_PREFIX}/{dataset}"):
        if key.endswith(".lineage.json"):
            ids.update(json.loads(store.read_bytes(key))["feedback_ids"])
    return ids


def export_corrections(
    dataset: str,
    settings: Settings | None = None,
    lookback_days: int = 30,
    now: datetime | None = None,
    model_name: str | None = None,
) -> dict:
    """Land the corrections of the last ``lookback_days`` that were not exported yet.

    With ``model_name``, only the corrections of that model's answers: each project's corrections
    land in its own dataset, never in another's.

    Returns ``{"batch_uri", "lineage_uri", "rows", "feedback_ids", "pending", "skipped"}``. ``batch_uri`` is
    None while fewer corrections wait than the dataset's ``validation.min_rows`` (they are
    exported together later). Corrections whose request lacks a field the dataset needs
    (a raw-prompt or chat request, or one without the label) are counted in ``skipped``.
    """
    settings = settings or load_settings()
    config = load_dataset_config(dataset)
    if config.explode:
        raise ConfigError(
            f"dataset {config.name} explodes {config.explode!r}; feedback export needs flat records"
        )
    store = ArtifactStore.from_settings(settings)
    now = now or datetime.now(UTC)
    done = _exported_ids(store, config.name)
    answers = [
        a
        for a in read_feedback(store, now - timedelta(days=lookback_days), now + timedelta(hours=1))
        if a.get("correction")
        and a["feedback_id"] not in done
        and (model_name is None or a["request"].get("model") == model_name)
    ]
    cols = config.columns
    if cols.id is None or cols.messages or cols.input is None:
        # A correction keeps its feedback id as the record id (the manifest lists which are in a
        # version), and fills the template's fields: that needs mapped id and input columns.
        reason = f"dataset {config.name} maps no id or input column (or maps messages): corrections cannot become its records"
        return {
            "batch_uri": None,
            "rows": 0,
            "feedback_ids": [],
            "pending": 0,
            "skipped": {reason: len(answers)},
        }
    needed = {"input": cols.input, **{k: k for k in config.keep}}
    for optional in ("instruction", "label"):
        if getattr(cols, optional):
            needed[optional] = getattr(cols, optional)
    rows, used, skipped = [], [], Counter()
    for a in answers:
        inputs = a["request"].get("inputs") or {}
        if not inputs:
            skipped["request sent a raw prompt or chat messages, not the template's fields"] += 1
            continue
        missing = sorted(field for field in needed if not str(inputs.get(field) or "").strip())
        if missing:
            skipped[f"request lacks {', '.join(missing)}"] += 1
            continue
        rows.append(
            {
                cols.id: FEEDBACK_ID_PREFIX + a["feedback_id"],
                cols.response: a["correction"],
                **{raw: inputs[field] for field, raw in needed.items()},
            }
        )
        used.append(a)
    result = {
        "batch_uri": None,
        "rows": 0,
        "feedback_ids": [],
        "pending": len(rows),
        "skipped": dict(skipped),
    }
    if len(rows) < config.validation.min_rows:
        log.info(
            "%d corrections waiting; %s needs batches of at least %d rows (validation.min_rows), so they wait for more",
            len(rows),
            config.name,
            config.validation.min_rows,
        )
        return result
    ids = sorted(a["feedback_id"] for a in used)
    key = f"{LANDING_PREFIX}/{config.name}/{hash_json(ids)[:16]}"
    uri = store.write_bytes(
        f"{key}.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    )
    # The lineage is written last: a batch without one was never announced and is redone next time.
    lineage = {
        "feedback_ids": ids,
        "request_ids": sorted(a["request_id"] for a in used),
        "exported_at": now.isoformat(),
        "dataset": config.name,
    }
    lineage_uri = store.write_bytes(f"{key}.lineage.json", json.dumps(lineage, indent=1).encode())
    log.info("landed %d corrections as %s (skipped: %s)", len(rows), uri, dict(skipped) or "none")
    return {
        **result,
        "batch_uri": uri,
        "lineage_uri": lineage_uri,
        "rows": len(rows),
        "feedback_ids": ids,
        "pending": 0,
    }
