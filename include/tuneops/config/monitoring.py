"""Monitor configs: drift, health and feedback thresholds, retraining triggers, alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tuneops.config.loading import StrictModel, load_model


class DriftThresholds(StrictModel):
    """Input drift of a window against the serving version's training prompts."""

    psi_max: float = Field(0.25, gt=0)  # prompt length in characters and in tokens
    ks_pvalue_min: float = Field(0.001, gt=0, lt=1)
    oov_increase_max: float = Field(0.05, gt=0, le=1)  # share of unseen words, above the reference's own
    label_psi_max: float = Field(0.25, gt=0)  # mix of the output's first required key (e.g. category)
    # How far the window's mean embedding (with the config's embedding_model) moved, in training
    # standard deviations, RMS over dimensions; calm windows of 100 requests sit near 0.1.
    embedding_shift_max: float = Field(0.3, gt=0)


class HealthThresholds(StrictModel):
    empty_rate_max: float = Field(0.05, ge=0, le=1)
    error_rate_max: float = Field(0.02, ge=0, le=1)
    refusal_rate_max: float = Field(0.10, ge=0, le=1)
    format_valid_min: float = Field(0.8, ge=0, le=1)
    latency_p95_max_s: float = Field(5.0, gt=0)
    pii_leak_rate_max: float = Field(0.0, ge=0, le=1)
    injection_rate_max: float = Field(0.05, ge=0, le=1)


class FeedbackThresholds(StrictModel):
    min_answers: int = Field(10, ge=1)  # fewer answers in a window are reported, not judged
    thumbs_up_rate_min: float = Field(0.6, ge=0, le=1)


class AlertConfig(StrictModel):
    """Where alerts go besides the task log. Secrets stay in Airflow connections or the environment.

    ``tuneops.airflow.notifier`` describes the two connections.
    """

    # A Slack Incoming Webhook connection (conn_type slackwebhook) with the webhook URL as its
    # password; not defined, or None: no Slack.
    slack_connection: str | None = "tuneops_slack"
    email_to: list[str] = []
    # An SMTP connection (conn_type smtp); extra.disable_ssl and disable_tls for a plain relay,
    # extra.from_email for the sender (default tuneops@localhost).
    smtp_connection: str = "smtp_default"


class MonitorConfig(StrictModel):
    model_name: str = Field("tuneops-support-triage", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    alias: str = "champion"
    dataset: str = "support_tickets"  # where feedback corrections land, in this dataset's raw format
    window_hours: int = Field(1, ge=1)
    min_requests: int = Field(100, ge=1)  # fewer requests in a window: drift is reported, not judged
    reference_rows: int = Field(2000, ge=10)
    # A local encoder (a folder, builtin:... or imported:<name>) for embedding drift; none: not measured.
    embedding_model: str | None = None
    drift: DriftThresholds = DriftThresholds()
    health: HealthThresholds = HealthThresholds()
    feedback: FeedbackThresholds = FeedbackThresholds()
    retrain_on: list[Literal["drift", "health", "feedback"]] = ["drift", "feedback"]
    alerts: AlertConfig = AlertConfig()


def load_monitor_config(ref: str | Path, overrides: dict | None = None) -> MonitorConfig:
    return load_model(MonitorConfig, ref, "monitoring", overrides)
