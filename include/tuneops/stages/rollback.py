"""``llmops_rollback``: move ``champion`` back, recording who and why."""

from __future__ import annotations

from tuneops.core.settings import Settings, load_settings


def rollback_champion(
    model_name: str, version: str | None, requested_by: str, reason: str, settings: Settings | None = None
) -> dict:
    """Move ``champion`` of ``model_name`` back (see ``tuneops.registry.registry.rollback``)."""
    from tuneops.registry.registry import rollback

    return rollback(model_name, version, requested_by, reason, settings or load_settings())
