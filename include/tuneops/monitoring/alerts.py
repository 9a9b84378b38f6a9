"""Alert delivery for monitoring breaches: the text, a Slack incoming webhook, e-mail.

Plain HTTP and SMTP, no Airflow, so the same functions serve the Airflow notifier
(``tuneops.airflow.notifier.MonitoringAlert``), the CLI and tests.
"""

from __future__ import annotations

import json
import smtplib
import urllib.request
from email.message import EmailMessage


def alert_text(result: dict, model_name: str) -> tuple[str, str]:
    """``(subject, body)`` for a monitoring result with breaches."""
    from tuneops.monitoring.monitor import describe

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


def post_slack(webhook_url: str, subject: str, body: str, timeout: float = 10) -> None:
    """Post to a Slack incoming webhook; raises on a non-2xx answer."""
    request = urllib.request.Request(
        webhook_url,
        data=json.dumps({"text": f"*{subject}*\n{body}"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 (the URL is the operator's webhook)
        if resp.status >= 300:
            raise RuntimeError(f"Slack webhook answered {resp.status}")


def send_email(
    to: list[str],
    subject: str,
    body: str,
    host: str,
    port: int = 25,
    login: str | None = None,
    password: str | None = None,
    sender: str = "tuneops@localhost",
) -> None:
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = subject, sender, ", ".join(to)
    message.set_content(body)
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        if login:
            smtp.starttls()
            smtp.login(login, password or "")
        smtp.send_message(message)
