"""One message per owner and day: the owner's alerts, an account a line, in three forms (Slack
blocks, plain text, HTML). Every value from the data is escaped for the form it goes into."""

from __future__ import annotations

import html
from dataclasses import dataclass
from itertools import groupby

KIND_TITLES = {
    "band_down": "band moved down",
    "score_drop": "score dropped",
    "onboarding_red": "onboarding turned red",
    "power_contact_quiet": "power contact went quiet",
}
NO_OWNER = "(no owner)"


@dataclass(frozen=True)
class Message:
    owner: str | None
    snapshot_date: object
    alerts: tuple[dict, ...]  # rows of export.alerts

    @property
    def keys(self) -> list[tuple]:
        return [(a["account_id"], a["snapshot_date"], a["kind"]) for a in self.alerts]

    @property
    def subject(self) -> str:
        accounts = len({a["account_id"] for a in self.alerts})
        return f"Health alerts for {self.owner or NO_OWNER} on {self.snapshot_date}: {accounts} account" \
               f"{'' if accounts == 1 else 's'}"

    def lines(self) -> list[str]:
        return [f"{a['account_name'] or a['account_id']} ({a['account_id']}): {KIND_TITLES[a['kind']]}, "
                f"{a['detail']}. Now {(a['health_band'] or 'no band').replace('_', ' ')} at "
                f"{a['health_score']:.1f}/100; biggest drag {a['top_drag'] or 'none'}. {a['score_reason']}"
                for a in self.alerts]

    def text(self) -> str:
        return "\n".join([self.subject, "", *(f"- {line}" for line in self.lines()), ""])

    def html(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self.lines())
        return f"<html><body><h2>{html.escape(self.subject)}</h2><ul>{items}</ul></body></html>"

    def slack(self) -> dict:
        """Slack's block layout; mrkdwn control characters in the data are escaped as Slack asks."""
        def escaped(text: str) -> str:
            return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

        return {
            "text": escaped(self.subject),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": self.subject[:150]}},
                *({"type": "section", "text": {"type": "mrkdwn", "text": escaped(line)}} for line in self.lines()),
            ],
        }


def messages(alerts: list[dict]) -> list[Message]:
    """The alerts (in pending_messages.sql's order) grouped into one message per owner and day."""
    return [Message(owner, day, tuple(rows))
            for (owner, day), rows in groupby(alerts, key=lambda a: (a["owner"], a["snapshot_date"]))]
