"""``llmops_rollback``: move ``champion`` back, recording who and why."""

from __future__ import annotations

from tuneops.core.settings import Settings, load_settings


def rollback_champion(
    model_name: str, version: str | None, requested_by: str, reason: str, settings: Settings | None = None
) -> dict:
    """Move ``champion`` of ``model_name`` back (see ``tuneops.registry.registry.rollback``).

    The result also names the project whose deployment follows the move: the restored version's
    ``tuneops.project`` tag, else the project that registers the model (None when neither says).
    """
    from tuneops.config import project_for_model
    from tuneops.registry.registry import registry_client, rollback

    settings = settings or load_settings()
    result = rollback(model_name, version, requested_by, reason, settings)
    tags = registry_client(settings).get_model_version(model_name, result["version"]).tags
    project = tags.get("tuneops.project") or project_for_model(model_name, settings.project_dirs)
    return {**result, "project": project}
