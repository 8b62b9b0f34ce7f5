"""What every table of a warehouse holds, as one digest per table: the evidence that a change to
how the pipeline computes leaves what it computes alone.

    python -m health_pipeline_tests.table_digests <warehouse.duckdb>

prints the digests as JSON. `test_extraction_unchanged.py` compares them with the ones recorded
in `data/table_digests.json` by the implementation before the fused extraction.
"""

from __future__ import annotations

import json
import sys

import duckdb

# table -> the columns compared. raw.events keeps fewer columns than it did: its shared ones.
TABLES = {
    "raw.events": ("activity_date", "event_id", "user_id", "time"),
    "raw.sessions": None,
    "raw.quarantine": None,
    "raw.accounts": None,
    "raw.contacts": None,
    "raw.identity_map": None,
    "raw.outcomes": None,
    "raw.account_history": None,
    "raw.contact_history": None,
    "core.daily_contact_activity": None,
    "core.contact_metrics": None,
    "core.account_metrics": None,
    "core.account_health": None,
    "export.account_health": None,
    "export.contact_usage": None,
    "export.band_changes": None,
    "export.backtest_summary": None,
}
NOT_COMPARED = {"computed_at", "recorded_at", "valid_from_recorded_at"}  # when the run happened, not what it computed


def _text(column: str) -> str:
    # A quarantined row's file, without the folder the raw data sits in: its last two parts.
    if column == "source_file":
        return """regexp_extract("source_file", '[^/]+/[^/]+$')"""
    return f'CAST("{column}" AS VARCHAR)'


def table_digests(conn: duckdb.DuckDBPyConnection, only: tuple[str, ...] | None = None,
                  recorded: dict[str, dict] | None = None) -> dict[str, dict]:
    """Per table (of TABLES, or `only` of them): its rows and the md5 of its sorted rows as text
    (every column but the run's own timestamps, or the listed ones; with `recorded` digests, the
    columns each was recorded with, so that a column added since leaves the comparison alone)."""
    out = {}
    for table, wanted in TABLES.items():
        if only is not None and table not in only:
            continue
        if recorded is not None:
            wanted = recorded[table]["columns"]
        columns = [name for name, *_ in conn.execute(f"DESCRIBE {table}").fetchall()
                   if name not in NOT_COMPARED and (wanted is None or name in wanted)]
        row = " || '|' || ".join(f"coalesce({_text(c)}, '∅')" for c in columns)
        rows, digest = conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg(r, chr(10) ORDER BY r), '')) "
            f"FROM (SELECT {row} AS r FROM {table})"
        ).fetchall()[0]
        out[table] = {"rows": rows, "columns": columns, "digest": digest}
    return out


if __name__ == "__main__":
    with duckdb.connect(sys.argv[1], read_only=True) as conn:
        print(json.dumps(table_digests(conn), indent=1))
