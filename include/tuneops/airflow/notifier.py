"""The Airflow notifier for monitoring breaches: the task log always, Slack and e-mail when configured.

Slack's webhook URL comes from an Airflow connection (host, or ``extra.webhook_url``), e-mail
goes through an SMTP connection: credentials never sit in a config file.
"""

from __future__ import annotations

from airflow.sdk import BaseHook, BaseNotifier

from tuneops.config import AlertConfig
from tuneops.monitoring.alerts import alert_text, post_slack, send_email


def _connection(conn_id: str | None):
    if not conn_id:
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # not defined: that channel is simply not configured
        return None


class MonitoringAlert(BaseNotifier):
    """Send one monitoring result's breaches; returns the channels it reached."""

    template_fields = ()

    def __init__(self, result: dict, model_name: str, config: AlertConfig):
        super().__init__()
        self.result = result
        self.model_name = model_name
        self.config = config

    def notify(self, context) -> list[str]:
        subject, body = alert_text(self.result, self.model_name)
        self.log.warning("%s\n%s", subject, body)
        sent = ["log"]
        slack = _connection(self.config.slack_connection)
        if slack is not None:
            url = (slack.extra_dejson or {}).get("webhook_url") or slack.host
            if url and "://" not in url:
                url = f"{slack.schema or 'https'}://{url}"
            post_slack(url, subject, body)
            sent.append("slack")
        if self.config.email_to:
            smtp = _connection(self.config.smtp_connection)
            if smtp is None:
                self.log.error(
                    "email_to is set but connection %r is not defined; no e-mail sent",
                    self.config.smtp_connection,
                )
            else:
                send_email(
                    self.config.email_to, subject, body, smtp.host, smtp.port or 25, smtp.login, smtp.password
                )
                sent.append("email")
        return sent
