"""Markdown tables that a materialization shows in the Dagster UI.

Every text cell is data (an account's name, an owner, a configured segment or measure), so it
is shown as written: no character of it can make a link, an image, emphasis, code, HTML or a
new cell or row of the table.
"""

import re

# CommonMark lets any ASCII punctuation be backslash-escaped, and an escaped character is always
# the character itself; escaping every one, not only today's active ones, also keeps GFM's
# autolinks (`www.`, `http:`, `a@b`) and table pipes inert.
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# A line break would end the table's row; other control characters are invisible or worse.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def markdown_text(value: str) -> str:
    """`value` as markdown that renders as that text, on one line."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", _CONTROL_CHARACTERS.sub(" ", value))


def markdown_table(header: list[str], rows: list[tuple]) -> str:
    def cell(value) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:,.1f}"
        if isinstance(value, int):
            return f"{value:,}"
        return markdown_text(str(value))

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
