"""``llmops_monitor``: assess the live model's last window, land human corrections as a batch."""

from __future__ import annotations

from datetime import datetime

from tuneops.config import MonitorConfig, load_monitor_config
from tuneops.core.settings import Settings, load_settings


def monitor_config(ref: str, window_hours: int | None = None, project: str | None = None) -> MonitorConfig:
    """The monitoring config ``ref`` (name or YAML path), with ``window_hours`` overriding its window.

    With ``project``, the project's registered model and dataset replace the config's.
    """
    overrides: dict = {"window_hours": window_hours} if window_hours else {}
    if project:
        from tuneops.config import load_project

        owner = load_project(project, load_settings().project_dirs)
        overrides |= {"model_name": owner.model_name, "dataset": owner.dataset}
    return load_monitor_config(ref, overrides or None)


def monitor_targets(project: str | None, config: str | None, settings: Settings | None = None) -> list[dict]:
    """What one ``llmops_monitor`` run assesses: ``[{"project", "config"}]``.

    ``project`` alone: that project's monitoring config. ``config`` alone: that config, for the
    project registering its model (if any). Neither: every project that names a monitoring config.
    """
    from tuneops.config import ConfigError, load_project, loadable_projects, project_for_model

    settings = settings or load_settings()
    if config:
        model = load_monitor_config(config).model_name
        owner = project or project_for_model(model, settings.project_dirs)
        if owner is None:  # a retrain request must name the project to reach its finetune run
            raise ConfigError(f"no project registers {model}, the model of {config}: set the 'project' Param")
        return [{"project": owner, "config": config}]
    if project:
        monitoring = load_project(project, settings.project_dirs).monitoring
        if not monitoring:
            raise ConfigError(f"project '{project}' names no monitoring config: set 'monitoring' in its file")
        return [{"project": project, "config": monitoring}]
    return [
        {"project": p.name, "config": p.monitoring}
        for p in loadable_projects(settings.project_dirs)
        if p.monitoring
    ]


def assess(config: MonitorConfig, window_end: datetime | None = None) -> dict:
    """Drift, health and feedback checks over the window ending at ``window_end`` (default: now)."""
    from tuneops.monitoring.monitor import run_monitor

    return run_monitor(config, window_end)


def export_feedback(config: MonitorConfig) -> dict:
    """Land the corrections not exported yet as a batch of the config's dataset (see ``tuneops.data.feedback``)."""
    from tuneops.data.feedback import export_corrections

    return export_corrections(config.dataset, model_name=config.model_name)
