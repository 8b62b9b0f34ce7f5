"""One message per owner and day: the owner's alerts, one sentence per account (what happened,
the score now, what changed), with links to the account's page in the morning report and to its
CRM record where the alert rows carry them, in three forms (Slack blocks, plain text, HTML). Every
value from the data is made one line (a line break or another control character in an owner's or
account's name could end an email header or start a forged one) and escaped for the form it goes
into. A message for Slack keeps within Slack's documented limits: an owner with more accounts than
a message's blocks hold gets it in parts, and a sentence too long for a section is cut with an
ellipsis (its links kept)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from itertools import groupby

# What each kind of alert says happened, around its `detail` (alerts_due.sql).
KIND_PHRASES = {
    "band_down": "band moved down, {detail}",
    "score_drop": "{detail}",
    "onboarding_red": "{detail}",
    "power_contact_quiet": "{detail}",
}
# The links a sentence ends with: (label, the alert row's key holding the URL).
LINKS = (("report", "report_url"), ("CRM record", "crm_url"))
NO_OWNER = "(no owner)"
# Slack's limits (api.slack.com/reference/block-kit): a message's blocks, the characters of a
# section's text and of a header's. Past them Slack refuses the message (invalid_blocks).
SLACK_MAX_BLOCKS = 50
SLACK_MAX_SECTION_TEXT = 3000
SLACK_MAX_HEADER_TEXT = 150
SLACK_ACCOUNTS_PER_MESSAGE = SLACK_MAX_BLOCKS - 1  # the header is one block, each account one more

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text: str) -> str:
    """`text` with each run of control characters (CR, LF, NUL, …) or line separators made one
    space, and trimmed."""
    return _CONTROL.sub(" ", text).strip()


def clipped(text: str, limit: int) -> str:
    """`text`, or as much of it as fits in `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def mrkdwn(text: str, limit: int = SLACK_MAX_SECTION_TEXT) -> str:
    """`text` for a Slack mrkdwn field: &, < and > escaped as Slack asks, and cut to `limit` (a
    section's) where it is longer (never inside an escape)."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if len(escaped) <= limit:
        return escaped
    return re.sub(r"&[a-z]*$", "", escaped[:limit - 1]) + "…"


def sentence(alerts: list[dict]) -> str:
    """One account's alerts of a day (rows of export.alerts) as one sentence: what happened, the
    score now, and what changed (else the biggest drag)."""
    first = alerts[0]
    happened = " and ".join(KIND_PHRASES[a["kind"]].format(detail=a["detail"]) for a in alerts)
    band = (first["health_band"] or "no band").replace("_", " ")
    score = "no score" if first["health_score"] is None else f"{first['health_score']:.1f}/100"
    delta = first.get("score_delta_7d")
    trend = f" ({delta:+.1f} in 7 days)" if delta is not None and all(a["kind"] != "score_drop" for a in alerts) else ""
    why = first.get("what_changed") or (f"biggest drag {first['top_drag']}" if first["top_drag"] else "")
    return one_line(f"{first['account_name'] or first['account_id']} ({first['account_id']}): {happened}; "
                    f"now {band} at {score}{trend}" + (f"; {why}" if why else "") + ".")


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

    @property
    def accounts(self) -> list[list[dict]]:
        """The alerts of each account, in order: an account's alerts come together."""
        return [list(rows) for _, rows in groupby(self.alerts, key=lambda a: a["account_id"])]

    def entries(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """Per account: its sentence, and its links as (label, URL)."""
        return [(sentence(rows), [(label, rows[0][key]) for label, key in LINKS if rows[0].get(key)])
                for rows in self.accounts]

    def lines(self) -> list[str]:
        return [line + "".join(f" {label}: {url}" for label, url in links) for line, links in self.entries()]

    def text(self) -> str:
        return "\n".join([self.subject, "", *(f"- {line}" for line in self.lines()), ""])

    def html(self) -> str:
        items = "".join(
            f"<li>{html.escape(line)}" + "".join(f' <a href="{html.escape(url)}">{label}</a>' for label, url in links)
            + "</li>" for line, links in self.entries())
        return f"<html><body><h2>{html.escape(self.subject)}</h2><ul>{items}</ul></body></html>"

    def slack(self) -> dict:
        """Slack's block layout: a header (plain text, which Slack does not parse) and a section per
        account. Only a message of at most SLACK_ACCOUNTS_PER_MESSAGE accounts fits in one."""
        sections = []
        for line, links in self.entries():
            linked = "".join(f" <{mrkdwn(url)}|{label}>" for label, url in links)
            sections.append({"type": "section", "text": {
                "type": "mrkdwn", "text": mrkdwn(line, SLACK_MAX_SECTION_TEXT - len(linked)) + linked}})
        return {
            "text": mrkdwn(self.subject),
            "blocks": [{"type": "header", "text": {"type": "plain_text",
                                                   "text": clipped(self.subject, SLACK_MAX_HEADER_TEXT)}}, *sections],
        }

    def split(self, most: int) -> list[Message]:
        """The message in parts of at most `most` accounts each, in order (itself if it fits)."""
        accounts = self.accounts
        chunks = [tuple(a for rows in accounts[i:i + most] for a in rows) for i in range(0, len(accounts), most)]
        return [replace(self, alerts=chunk, part=n, parts=len(chunks)) for n, chunk in enumerate(chunks, 1)]


def messages(alerts: list[dict], most: int | None = None) -> list[Message]:
    """The alerts (in pending_messages.sql's order) grouped into one message per owner and day,
    each split into parts of at most `most` accounts where a sink limits them."""
    grouped = [Message(owner, day, tuple(rows))
               for (owner, day), rows in groupby(alerts, key=lambda a: (a["owner"], a["snapshot_date"]))]
    return [part for message in grouped for part in (message.split(most) if most else [message])]
