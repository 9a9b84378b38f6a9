"""The Airflow notifiers: monitoring breaches and failed stages (a rejected batch, a failed gate).

Each goes to the task log always, and to Slack and e-mail when configured.

Delivery goes through the providers' notifiers, each configured by an Airflow connection, so
credentials never sit in a config file:

- **Slack**: ``alerts.slack_connection`` (default ``tuneops_slack``) is a Slack Incoming Webhook
  connection (``conn_type`` ``slackwebhook``) holding the webhook URL, or just its
  ``T.../B.../...`` token, as its password, e.g.
  ``AIRFLOW_CONN_TUNEOPS_SLACK='{"conn_type": "slackwebhook", "password": "https://hooks.slack.com/services/T0/B0/XXX"}'``.
  No such connection: no Slack.
- **e-mail** to ``alerts.email_to`` through ``alerts.smtp_connection`` (default
  ``smtp_default``), an SMTP provider connection: host, port, login and password; implicit TLS
  unless ``extra.disable_ssl``, STARTTLS unless ``extra.disable_tls`` (a plain relay on port 25
  sets both); the sender is ``extra.from_email``, else ``tuneops@localhost``.
"""

from __future__ import annotations

import html

from airflow.sdk import BaseHook, BaseNotifier
from airflow.sdk.exceptions import AirflowNotFoundException

from tuneops.config import AlertConfig

DEFAULT_SENDER = "tuneops@localhost"


def _connection(conn_id: str | None):
    """The connection ``conn_id``, or None when it is not defined (that channel is off)."""
    if not conn_id:
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


class MonitoringAlert(BaseNotifier):
    """Send one monitoring result's breaches; ``notify`` returns the channels it reached.

    Raises ValueError for a Slack connection without the webhook in its password, and what the
    provider's notifier raises when Slack or the SMTP server refuses the message.
    """

    template_fields = ()

    def __init__(self, result: dict, model_name: str, config: AlertConfig):
        super().__init__()
        self.result = result
        self.model_name = model_name
        self.config = config

    def notify(self, context) -> list[str]:
        from tuneops.monitoring.alerts import alert_text

        subject, body = alert_text(self.result, self.model_name)
        return deliver(subject, body, self.config, context, self.log)


class StageFailureNotifier(BaseNotifier):
    """``on_failure_callback`` of a task whose failure is a verdict users must see: a rejected batch,
    a gate that failed. Sends the task's error (which names the batch or the gate's deciding rule and
    report) with the DAG run and the project, through the same channels as monitoring alerts
    (``AlertConfig`` defaults: Slack through ``tuneops_slack`` when that connection exists)."""

    template_fields = ()

    def __init__(self, what: str, config: AlertConfig | None = None):
        super().__init__()
        self.what = what
        self.config = config or AlertConfig()

    def notify(self, context) -> list[str]:
        ti, dag_run = context.get("ti"), context.get("dag_run")
        project = getattr(dag_run, "partition_key", None) or "-"
        where = f"{getattr(ti, 'dag_id', '?')} / {getattr(dag_run, 'run_id', '?')} / {getattr(ti, 'task_id', '?')}"
        subject = f"[tuneops] {self.what}: project {project} ({where})"
        body = str(context.get("exception") or "see the task log")
        return deliver(subject, body, self.config, context, self.log)


def deliver(subject: str, body: str, config: AlertConfig, context, log) -> list[str]:
    """Log the message, then send it to every channel ``config`` turns on; returns the channels reached."""
    # The providers load on delivery only: DAG files build these notifiers at parse time.
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    log.warning("%s\n%s", subject, body)
    sent = ["log"]
    # The providers' notifiers are called with notify(), not as callables: a call renders the
    # message as a Jinja template first, and the text here is finished text, not a template.
    slack = _connection(config.slack_connection)
    if slack is not None:
        _require_webhook(config.slack_connection, slack)
        SlackWebhookNotifier(
            slack_webhook_conn_id=config.slack_connection, text=f"*{subject}*\n{body}"
        ).notify(context)
        sent.append("slack")
    if config.email_to:
        smtp = _connection(config.smtp_connection)
        if smtp is None:
            log.error(
                "email_to is set but connection %r is not defined; no e-mail sent", config.smtp_connection
            )
        else:
            SmtpNotifier(
                to=list(config.email_to),
                from_email=(smtp.extra_dejson or {}).get("from_email") or DEFAULT_SENDER,
                subject=subject,
                html_content=f"<pre>{html.escape(body)}</pre>",
                smtp_conn_id=config.smtp_connection,
            ).notify(context)
            sent.append("email")
    return sent


def _require_webhook(conn_id: str, conn) -> None:
    """Fail with the fix when ``conn`` lacks the webhook where Slack's hook reads it (the password)."""
    if (conn.password or "").strip():
        return
    raise ValueError(
        f"Airflow connection {conn_id!r} has no password: a Slack Incoming Webhook connection holds the "
        "webhook URL (or its T.../B.../... token) there, not in host or extra.webhook_url. Define it as "
        f'AIRFLOW_CONN_{conn_id.upper()}=\'{{"conn_type": "slackwebhook", "password": '
        '"https://hooks.slack.com/services/..."}\', or set alerts.slack_connection to null to turn Slack off.'
    )
