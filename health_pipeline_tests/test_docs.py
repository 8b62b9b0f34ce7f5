"""The README is a front door and the guides behind it hold together: every relative link and
anchor in README.md and docs/*.md resolves (anchors by GitHub's heading slugs), the README stays
within 350 lines with code blocks that fit 100 columns, CI runs the README's test command, and
every guide opens with a table of contents that lists each of its sections."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from health_pipeline import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
DOCS = sorted((PROJECT_ROOT / "docs").glob("*.md"))
README_MAX_LINES = 350
CODE_COLUMNS = 100
# The map of the code keeps the shape it was written in: its sections are the map.
WITHOUT_CONTENTS = {"architecture.md"}

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+).+?\1")
LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) inside fenced code blocks."""
    prose = {number for number, _ in prose_lines(text)}
    return [(number, line) for number, line in enumerate(text.splitlines(), 1)
            if number not in prose and not FENCE.match(line)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def headings(path: Path) -> list[tuple[int, str]]:
    """(level, text) of every heading outside code blocks."""
    return [(len(m[1]), m[2]) for _, line in prose_lines(path.read_text()) if (m := HEADING.match(line))]


def anchors(path: Path) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, … as on GitHub."""
    seen, result = Counter(), set()
    for _, text in headings(path):
        base = slug(text)
        result.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return result


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every markdown link and image outside code."""
    return [(number, m[2]) for number, line in prose_lines(path.read_text())
            for m in LINK.finditer(CODE_SPAN.sub("code", line))]


def broken(path: Path, root: Path = PROJECT_ROOT) -> list[str]:
    """What is wrong with each relative link of `path`: a missing file, or an anchor no heading has."""
    problems = []
    for number, target in links(path):
        if SCHEME.match(target):
            continue  # http, https, mailto: outside the repository
        file, _, anchor = target.partition("#")
        destination = (path.parent / file).resolve() if file else path
        where = f"{path.relative_to(root)}:{number}: {target}"
        if not destination.exists():
            problems.append(f"{where}: no such file")
        elif anchor and destination.suffix != ".md":
            problems.append(f"{where}: an anchor into a file that is not markdown")
        elif anchor and anchor not in anchors(destination):
            problems.append(f"{where}: no heading with that anchor in {destination.name}")
    return problems


def contents_anchors(path: Path) -> set[str]:
    """The anchors linked from the guide's opening, between its title and its first section."""
    opening = []
    for _, line in prose_lines(path.read_text()):
        if line.startswith("## "):
            break
        opening.append(line)
    return {target[1:] for line in opening if line.lstrip().startswith(("- ", "* ", "1. "))
            for target in re.findall(r"\]\((#[^)\s]+)\)", line)}


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Quick start", "quick-start"),
    ("Is the score any good? (the backtest)", "is-the-score-any-good-the-backtest"),
    ("Upgrading: schema changes", "upgrading-schema-changes"),
    ("Daily contact activity (`core.daily_contact_activity`)", "daily-contact-activity-coredaily_contact_activity"),
    ("Round 6 (issue 14, continued): what Dagster's records cost a backfill",
     "round-6-issue-14-continued-what-dagsters-records-cost-a-backfill"),
    ("Walk-through: lower a threshold and re-score a month", "walk-through-lower-a-threshold-and-re-score-a-month"),
    ("Backfills → one run", "backfills--one-run"),
    ("See [Sources](docs/sources.md)", "see-sources"),
])
def test_slug_follows_github(heading, anchor):
    assert slug(heading) == anchor


def test_repeated_headings_get_numbered_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n## Notes\n\n```\n## not a heading\n```\n\n### Notes\n\n## Notes\n")
    assert anchors(page) == {"page", "notes", "notes-1", "notes-2"}


def test_a_missing_file_or_anchor_is_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](other.md#a-section) [gone](missing.md) [bad](other.md#no-section)\n"
                    "[self](#page) `[in code](missing.md)` [web](https://example.com/x#y)\n"
                    "```\n[in a block](missing.md)\n```\n")
    assert broken(page, root=tmp_path) == ["page.md:3: missing.md: no such file",
                                           "page.md:3: other.md#no-section: no heading with that anchor in other.md"]


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(path):
    assert broken(path) == []


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; at most {README_MAX_LINES}: move detail to a guide under docs/")
    wide = [f"{number}: {len(line)} columns" for number, line in code_lines(README.read_text())
            if len(line) > CODE_COLUMNS]
    assert wide == [], f"README code lines wider than {CODE_COLUMNS} columns (the asset graph among them)"


def test_ci_runs_the_readme_test_command():
    ci_command = (PROJECT_ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command in README.read_text().splitlines()


@pytest.mark.parametrize("path", [p for p in DOCS if p.name not in WITHOUT_CONTENTS], ids=lambda p: p.name)
def test_every_guide_opens_with_its_contents(path):
    sections = {slug(text) for level, text in headings(path) if level == 2}
    listed = contents_anchors(path)
    assert sections, f"{path.name} has no sections"
    assert sections <= listed, f"{path.name}'s contents, before its first section, lack {sorted(sections - listed)}"


# A message or comment in the code that sends the reader to a guide: (docs/x.md: Heading) or docs/x.md, "Heading".
CODE_POINTER = re.compile(r"""(docs/[a-z_]+\.md)(?::\s*([A-Z][^)]*)|,\s*\\?(["'])([A-Z].*?)\\?\3)""")


def test_every_pointer_from_the_code_names_a_heading_of_its_guide():
    files = [*(PROJECT_ROOT / "health_pipeline").rglob("*.py"), *(PROJECT_ROOT / "health_pipeline").rglob("*.yaml"),
             PROJECT_ROOT / "data" / "dagster_home" / "dagster.yaml"]
    pointers = [(path, match[1], match[2] or match[4]) for path in files
                for match in CODE_POINTER.finditer(path.read_text())]
    assert len(pointers) >= 5  # the pointers this test exists for are found
    missing = [f"{path.relative_to(PROJECT_ROOT)}: {guide}: {heading!r}" for path, guide, heading in pointers
               if heading.strip() not in {title for _, title in headings(PROJECT_ROOT / guide)}]
    assert not missing
