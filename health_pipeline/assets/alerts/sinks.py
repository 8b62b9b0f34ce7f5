"""Where alert messages go: a Slack incoming webhook (a JSON POST) and email over SMTP (a plain
text and an HTML part). Both use the standard library, with a bounded timeout, so a slow or
dead sink costs at most `timeout` seconds a message.

A sender returns when the sink accepted the message and raises SinkError when it did not: why
(the sink's answer with its body, redacted), and whether the refusal is permanent, that is
about the message itself and the same on every try (an HTTP 4xx but 408 and 429, an SMTP 5xx,
no address, a message that cannot be encoded), as against a sink that is down, slow, failing
or asking to slow down.

The webhook URL and the SMTP login are secrets, read from the environment variables the
scorecard names: every error text is redacted, so it can be logged and stored."""

from __future__ import annotations

import email.errors
import http.client
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

from .messages import SLACK_ACCOUNTS_PER_MESSAGE, Message, clipped, one_line

ANSWER_CHARS = 500  # of a sink's answer kept in an error: enough for Slack's or an SMTP server's reason
HTTP_TRY_AGAIN = (408, 429)  # the 4xx answers about the sink's state (a timeout, a rate limit), not the message
# Slack's webhooks are https://; plain http:// is accepted only to this machine (a local relay).
LOCAL_HTTP = re.compile(r"http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$)", re.IGNORECASE)
WEBHOOK_FORM = "https://hooks.slack.com/services/…"


class SinkError(RuntimeError):
    """A message was not accepted. `permanent`: the sink refused it for a reason that trying again
    will not change; otherwise its alerts stay pending for the next run."""

    def __init__(self, reason: str, permanent: bool = False):
        super().__init__(reason)
        self.permanent = permanent


def secret_problems(alerts: Alerts) -> list[str]:
    """One line per sink secret that is set but unusable, naming its variable, never its value.
    An unset one is not a problem here: sending reports it, and its alerts stay pending."""
    slack = alerts.slack
    problem = slack and settings.is_set(slack.webhook_url_env) and webhook_problem(slack.webhook_url_env)
    return [problem] if problem else []


def secret_env_vars(alerts: Alerts) -> list[str]:
    """The environment variables holding the sinks' secrets, for `redact`."""
    return [name for sink in (alerts.slack, alerts.email) if sink for name in sink.secrets]


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


def answer(text: bytes | str) -> str:
    """A sink's answer as one line, cut to ANSWER_CHARS."""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return clipped(one_line(text), ANSWER_CHARS)


def send_slack(sink: SlackSink, message: Message, timeout: float) -> None:
    url = secret(sink.webhook_url_env)
    if problem := webhook_problem(sink.webhook_url_env):
        raise SinkError(problem)
    try:
        request = urllib.request.Request(url, data=json.dumps(message.slack()).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise SinkError(redact(f"Slack webhook answered HTTP {exc.code}: {_body(exc) or exc.reason}", sink.secrets),
                        permanent=400 <= exc.code < 500 and exc.code not in HTTP_TRY_AGAIN) from None
    # urllib's ValueErrors (unknown url type, InvalidURL) quote the URL: they are redacted like the rest.
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise SinkError(redact(f"Slack webhook: {getattr(exc, 'reason', exc)}", sink.secrets)) from None


def _body(response: urllib.error.HTTPError) -> str:
    """The body of an error answer (Slack says why there: invalid_blocks, no_text, …), or ''."""
    try:
        return answer(response.read())
    except OSError:
        return ""
    finally:
        response.close()


def send_email(sink: EmailSink, message: Message, timeout: float) -> None:
    to = sink.address(message.owner)
    if to is None:
        raise SinkError("no email address for this owner in owners, and no default_to", permanent=True)
    try:
        mail = EmailMessage()
        mail["Subject"], mail["From"], mail["To"] = message.subject, one_line(sink.sender), one_line(to)
        mail.set_content(message.text())
        mail.add_alternative(message.html(), subtype="html")
        mail.as_bytes()  # encoded here, so a header that cannot be is the message's failure, not the server's
    except (ValueError, TypeError, email.errors.MessageError) as exc:
        raise SinkError(redact(f"the email cannot be encoded: {exc}", sink.secrets), permanent=True) from None
    server = f"SMTP {sink.host}:{sink.port}"
    try:
        with smtplib.SMTP(sink.host, sink.port, timeout=timeout) as smtp:
            if sink.starttls:
                smtp.starttls()
            if sink.username_env:
                smtp.login(secret(sink.username_env), secret(sink.password_env or ""))
            try:
                smtp.send_message(mail)
            except smtplib.SMTPNotSupportedError as exc:  # an address needs SMTPUTF8, which the server lacks
                raise SinkError(redact(f"{server}: {exc}", sink.secrets), permanent=True) from None
    except smtplib.SMTPRecipientsRefused as exc:
        refusals = exc.recipients.items()
        raise SinkError(redact(f"{server} refused " + "; ".join(f"{address}: {code} {answer(reason)}"
                                                                for address, (code, reason) in refusals),
                               sink.secrets),
                        permanent=all(code >= 500 for _, (code, _) in refusals)) from None
    except smtplib.SMTPResponseException as exc:
        raise SinkError(redact(f"{server} answered {exc.smtp_code} {answer(exc.smtp_error)}", sink.secrets),
                        permanent=exc.smtp_code >= 500) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SinkError(redact(f"{server}: {exc}", sink.secrets)) from None


SENDERS = {"slack": send_slack, "email": send_email}
# The most accounts one message may carry, for a sink that limits a message's size.
ACCOUNTS_PER_MESSAGE = {"slack": SLACK_ACCOUNTS_PER_MESSAGE}
