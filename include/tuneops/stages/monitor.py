"""``llmops_monitor``: assess the live model's last window, land human corrections as a batch."""

from __future__ import annotations

from datetime import datetime

from tuneops.config import MonitorConfig, load_monitor_config


def monitor_config(ref: str, window_hours: int | None = None) -> MonitorConfig:
    """The monitoring config ``ref`` (name or YAML path), with ``window_hours`` overriding its window."""
    return load_monitor_config(ref, {"window_hours": window_hours} if window_hours else None)


def assess(config: MonitorConfig, window_end: datetime | None = None) -> dict:
    """Drift, health and feedback checks over the window ending at ``window_end`` (default: now)."""
    from tuneops.monitoring.monitor import run_monitor

    return run_monitor(config, window_end)


def export_feedback(config: MonitorConfig) -> dict:
    """Land the corrections not exported yet as a batch of the config's dataset (see ``tuneops.data.feedback``)."""
    from tuneops.data.feedback import export_corrections

    return export_corrections(config.dataset)
