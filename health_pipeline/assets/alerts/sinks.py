"""Where alert messages go: a Slack incoming webhook (a JSON POST) and email over SMTP (a plain
text and an HTML part). Both use the standard library, with a bounded timeout, so a slow or
dead sink costs at most `timeout` seconds a message and the alert stays pending.

The webhook URL and the SMTP login are secrets, read from the environment variables the
scorecard names: a SinkError's message is redacted, so it can be logged and stored.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage

from health_pipeline import settings
from health_pipeline.redaction import redact
from health_pipeline.scorecard.model import Alerts, EmailSink, SlackSink

from .messages import Message

# Slack's webhooks are https://; plain http:// is accepted only to this machine (a local relay).
LOCAL_HTTP = re.compile(r"http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$)", re.IGNORECASE)
WEBHOOK_FORM = "https://hooks.slack.com/services/…"


class SinkError(RuntimeError):
    """A message was not accepted; its alerts stay pending. The message is redacted."""


def secret_problems(alerts: Alerts) -> list[str]:
    """One line per sink secret that is set but unusable, naming its variable, never its value.
    An unset one is not a problem here: sending reports it, and its alerts stay pending."""
    slack = alerts.slack
    problem = slack and settings.is_set(slack.webhook_url_env) and webhook_problem(slack.webhook_url_env)
    return [problem] if problem else []


def secret_env_vars(alerts: Alerts) -> list[str]:
    """The environment variables holding the sinks' secrets, for `redact`."""
    return [*([alerts.slack.webhook_url_env] if alerts.slack else []),
            *(login_env_vars(alerts.email) if alerts.email else [])]


def login_env_vars(sink: EmailSink) -> list[str]:
    return [name for name in (sink.username_env, sink.password_env) if name]


def webhook_problem(env_var: str) -> str | None:
    """What is wrong with the webhook URL in `env_var`, naming the variable and never quoting it."""
    url = os.environ.get(env_var, "").strip()
    schemes = ("https", "http") if LOCAL_HTTP.match(url) else ("https",)
    return settings.url_problem(env_var, url, schemes, WEBHOOK_FORM)


def secret(env_var: str) -> str:
    value = os.environ.get(env_var, "")
    if not value:
        raise SinkError(f"{env_var} is not set")
    return value


def send_slack(sink: SlackSink, message: Message, timeout: float) -> None:
    url = secret(sink.webhook_url_env)
    if problem := webhook_problem(sink.webhook_url_env):
        raise SinkError(problem)
    try:
        request = urllib.request.Request(url, data=json.dumps(message.slack()).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    # urllib's ValueErrors (unknown url type, InvalidURL) quote the URL: they are redacted like the rest.
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        raise SinkError(redact(f"Slack webhook: {getattr(exc, 'reason', exc)}", [sink.webhook_url_env])) from None


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
    except (smtplib.SMTPException, OSError) as exc:  # a server's reply may echo the login
        raise SinkError(redact(f"SMTP {sink.host}:{sink.port}: {exc}", login_env_vars(sink))) from None


SENDERS = {"slack": send_slack, "email": send_email}
