"""Import templates: the sync table of one day as the CSV a CS tool's importer expects.

Each `<name>.yaml` here names the tool, the column it matches records on, and its columns: a
header, the sync-table column it comes `from`, and a `format` (text, with an optional
`max_length`; number, with `decimals`; date, with a strftime `pattern`; band, with the tool's
`labels` for healthy, neutral and at_risk). Rows without a value in the match column cannot be
matched, so they are left out (and counted). `health-pipeline export --template NAME --date D`
writes the file; the CSV is spreadsheet-safe like every export.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml

from health_pipeline.contract import sync_table_columns
from health_pipeline.scorecard.model import BANDS, HealthConfig
from health_pipeline.sql import SqlFolder

SQL = SqlFolder(__file__)
HERE = Path(__file__).resolve().parent
FORMATS = ("text", "number", "date", "band")


class TemplateError(ValueError):
    """A template that cannot be used, named with its file and the reason."""


@dataclass(frozen=True)
class Column:
    header: str
    source: str
    format: str = "text"
    decimals: int = 0
    pattern: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    max_length: int | None = None


@dataclass(frozen=True)
class Template:
    name: str
    tool: str
    match_on: str
    columns: tuple[Column, ...]

    @property
    def match_source(self) -> str:
        return next(c.source for c in self.columns if c.header == self.match_on)


def names() -> list[str]:
    return sorted(path.stem for path in HERE.glob("*.yaml"))


def load_template(name: str, config: HealthConfig) -> Template:
    path = HERE / f"{name}.yaml"
    if not path.exists():
        raise TemplateError(f"no import template {name!r}; there are: {', '.join(names())}")
    raw = yaml.safe_load(path.read_text())
    known = set(sync_table_columns(config))
    columns = []
    for i, column in enumerate(raw["columns"]):
        where = f"{path.name}: columns[{i}]"
        if column.get("from") not in known:
            raise TemplateError(f"{where}: from {column.get('from')!r} is not a column of the sync table")
        if column.get("format", "text") not in FORMATS:
            raise TemplateError(f"{where}: format must be one of {', '.join(FORMATS)}")
        labels = tuple((band, str(column.get("labels", {}).get(band, band))) for band in BANDS)
        columns.append(Column(header=str(column["header"]), source=column["from"],
                              format=column.get("format", "text"), decimals=int(column.get("decimals", 0)),
                              pattern=column.get("pattern", "%Y-%m-%d"), labels=labels,
                              max_length=column.get("max_length")))
    template = Template(name, raw["tool"], raw["match_on"], tuple(columns))
    if raw["match_on"] not in {c.header for c in columns}:
        raise TemplateError(f"{path.name}: match_on {raw['match_on']!r} is not one of its headers")
    return template


def template_rows(conn: duckdb.DuckDBPyConnection, template: Template, snapshot_date: dt.date) -> pa.Table:
    """The day's rows in the template's layout, ready to write as CSV."""
    present = {row[0] for row in conn.execute("DESCRIBE export.account_health").fetchall()}
    missing = sorted({c.source for c in template.columns} - present)
    if missing:
        raise TemplateError(f"the sync table has no {', '.join(missing)} yet (it was built by an older version): "
                            "run `health-pipeline run` again, then export")
    params: dict = {"snapshot_date": snapshot_date}
    for i, column in enumerate(template.columns):
        if column.format == "date":
            params[f"fmt_{i}"] = column.pattern
        if column.format == "band":
            params.update({f"label_{i}_{band}": label for band, label in column.labels})
    return conn.sql(template_rows_sql(template), params=params).to_arrow_table()


def template_rows_sql(template: Template) -> str:
    return SQL.render("template_rows", columns=template.columns, bands=BANDS, match_source=template.match_source)
