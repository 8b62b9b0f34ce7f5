"""One message per owner and day: the owner's alerts, an account a line, in three forms (Slack
blocks, plain text, HTML). Every value from the data is made one line (a line break or another
control character in an owner's or account's name could end an email header or start a forged
one) and escaped for the form it goes into. A message for Slack keeps within Slack's documented
limits: an owner with more alerts than a message's blocks hold gets it in parts, and a line too
long for a section is cut with an ellipsis."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from itertools import groupby

KIND_TITLES = {
    "band_down": "band moved down",
    "score_drop": "score dropped",
    "onboarding_red": "onboarding turned red",
    "power_contact_quiet": "power contact went quiet",
}
NO_OWNER = "(no owner)"
# Slack's limits (api.slack.com/reference/block-kit): a message's blocks, the characters of a
# section's text and of a header's. Past them Slack refuses the message (invalid_blocks).
SLACK_MAX_BLOCKS = 50
SLACK_MAX_SECTION_TEXT = 3000
SLACK_MAX_HEADER_TEXT = 150
SLACK_ALERTS_PER_MESSAGE = SLACK_MAX_BLOCKS - 1  # the header is one block, each alert one more

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text: str) -> str:
    """`text` with each run of control characters (CR, LF, NUL, …) or line separators made one
    space, and trimmed."""
    return _CONTROL.sub(" ", text).strip()


def clipped(text: str, limit: int) -> str:
    """`text`, or as much of it as fits in `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def mrkdwn(text: str) -> str:
    """`text` for a Slack mrkdwn field: &, < and > escaped as Slack asks, and cut to a section's
    limit where it is longer (never inside an escape)."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if len(escaped) <= SLACK_MAX_SECTION_TEXT:
        return escaped
    return re.sub(r"&[a-z]*$", "", escaped[:SLACK_MAX_SECTION_TEXT - 1]) + "…"


@dataclass(frozen=True)
class Message:
    owner: str | None  # as the accounts export has it: what the email sink routes by
    snapshot_date: object
    alerts: tuple[dict, ...]  # rows of export.alerts
    part: int = 1  # of `parts`, where a sink limits how many alerts a message holds
    parts: int = 1

    @property
    def keys(self) -> list[tuple]:
        return [(a["account_id"], a["snapshot_date"], a["kind"]) for a in self.alerts]

    @property
    def owner_name(self) -> str:
        return one_line(self.owner or "") or NO_OWNER

    @property
    def name(self) -> str:
        """Whose message this is, of which day (and which part): what a failure names."""
        return f"{self.owner_name} on {self.snapshot_date}" + (
            f" (part {self.part} of {self.parts})" if self.parts > 1 else "")

    @property
    def subject(self) -> str:
        accounts = len({a["account_id"] for a in self.alerts})
        return f"Health alerts for {self.name}: {accounts} account{'' if accounts == 1 else 's'}"

    def lines(self) -> list[str]:
        return [one_line(f"{a['account_name'] or a['account_id']} ({a['account_id']}): {KIND_TITLES[a['kind']]}, "
                         f"{a['detail']}. Now {(a['health_band'] or 'no band').replace('_', ' ')} at "
                         f"{a['health_score']:.1f}/100; biggest drag {a['top_drag'] or 'none'}. {a['score_reason']}")
                for a in self.alerts]

    def text(self) -> str:
        return "\n".join([self.subject, "", *(f"- {line}" for line in self.lines()), ""])

    def html(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self.lines())
        return f"<html><body><h2>{html.escape(self.subject)}</h2><ul>{items}</ul></body></html>"

    def slack(self) -> dict:
        """Slack's block layout: a header (plain text, which Slack does not parse) and a section per
        alert. Only a message of at most SLACK_ALERTS_PER_MESSAGE alerts fits in one."""
        return {
            "text": mrkdwn(self.subject),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text",
                                            "text": clipped(self.subject, SLACK_MAX_HEADER_TEXT)}},
                *({"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(line)}} for line in self.lines()),
            ],
        }

    def split(self, most: int) -> list[Message]:
        """The message in parts of at most `most` alerts each, in order (itself if it fits)."""
        chunks = [self.alerts[i:i + most] for i in range(0, len(self.alerts), most)]
        return [replace(self, alerts=chunk, part=n, parts=len(chunks)) for n, chunk in enumerate(chunks, 1)]


def messages(alerts: list[dict], most: int | None = None) -> list[Message]:
    """The alerts (in pending_messages.sql's order) grouped into one message per owner and day,
    each split into parts of at most `most` alerts where a sink limits them."""
    grouped = [Message(owner, day, tuple(rows))
               for (owner, day), rows in groupby(alerts, key=lambda a: (a["owner"], a["snapshot_date"]))]
    return [part for message in grouped for part in (message.split(most) if most else [message])]
