"""Where alert messages go: a Slack incoming webhook (a JSON POST) and email over SMTP (a plain
text and an HTML part). Both use the standard library, with a bounded timeout, so a slow or
dead sink costs at most `timeout` seconds a message and the alert stays pending."""

from __future__ import annotations

import json
import os
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage

from health_pipeline.scorecard.model import EmailSink, SlackSink

from .messages import Message


class SinkError(RuntimeError):
    """A message was not accepted; its alerts stay pending."""


def secret(env_var: str) -> str:
    value = os.environ.get(env_var, "")
    if not value:
        raise SinkError(f"{env_var} is not set")
    return value


def send_slack(sink: SlackSink, message: Message, timeout: float) -> None:
    request = urllib.request.Request(
        secret(sink.webhook_url_env), data=json.dumps(message.slack()).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise SinkError(f"Slack webhook: {getattr(exc, 'reason', exc)}") from None


def send_email(sink: EmailSink, message: Message, timeout: float) -> None:
    to = sink.address(message.owner)
    if to is None:
        raise SinkError(f"no email address for owner {message.owner!r} and no default_to")
    email = EmailMessage()
    email["Subject"], email["From"], email["To"] = message.subject, sink.sender, to
    email.set_content(message.text())
    email.add_alternative(message.html(), subtype="html")
    try:
        with smtplib.SMTP(sink.host, sink.port, timeout=timeout) as smtp:
            if sink.starttls:
                smtp.starttls()
            if sink.username_env:
                smtp.login(secret(sink.username_env), secret(sink.password_env or ""))
            smtp.send_message(email)
    except (smtplib.SMTPException, OSError) as exc:
        raise SinkError(f"SMTP {sink.host}:{sink.port}: {exc}") from None


SENDERS = {"slack": send_slack, "email": send_email}
