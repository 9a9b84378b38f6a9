"""The text of a monitoring alert: subject and body for a result with breaches.

Plain strings, no Airflow and no delivery: ``tuneops.airflow.notifier.MonitoringAlert``
sends them to the task log, Slack and e-mail through Airflow's notifiers.
"""

from __future__ import annotations


def describe(breach: dict) -> str:
    """One line for a breached check: ``metric = value breaks op threshold (kind)``."""
    value = breach["value"]
    return (
        f"{breach['metric']} = {value:.4g} breaks {breach['op']} {breach['threshold']:g} ({breach['kind']})"
    )


def alert_text(result: dict, model_name: str) -> tuple[str, str]:
    """``(subject, body)`` for a monitoring result (as ``run_monitor`` returns it) with breaches."""
    breaches = result["breaches"]
    subject = f"[tuneops] {model_name}: {len(breaches)} monitoring breach(es)" + (
        ", retraining requested" if result.get("retrain") else ""
    )
    lines = [
        f"{model_name} v{result.get('version')} window {result['window_start'][:16]} .. {result['window_end'][:16]} "
        f"({result['requests']} requests)",
        *(f"- {describe(b)}" for b in breaches),
        f"report: {result.get('report_uri', '')}",
    ]
    return subject, "\n".join(lines)
