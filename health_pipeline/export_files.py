"""The sync files: one parquet and one CSV file per snapshot date, written so readers never see half a file.

Every exported table (export.account_health, export.contact_usage, export.band_changes) is also
written as `<export dir>/<name>/snapshot_date=YYYY-MM-DD.parquet|csv`, keyed like the table,
so a CS tool that imports files upserts on the same key.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from health_pipeline.publish import write_range
from health_pipeline.sql import quote


def export_params(first_day: dt.date, last_day: dt.date) -> dict:
    """An export's parameters: its range, and computed_at, the run's clock in UTC."""
    return {"first_day": first_day, "last_day": last_day, "computed_at": dt.datetime.now(dt.UTC).replace(tzinfo=None)}


def write_atomically(table: pa.Table, path: Path) -> None:
    """Write a file so readers see the old one or the whole new one, never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix == ".parquet":
            pq.write_table(table, tmp)
        else:
            pa_csv.write_csv(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_orphaned_temp_files(out_dir: Path) -> None:
    """Delete the temp files of writers killed mid-write (a SIGKILL skips write_atomically's cleanup)."""
    for tmp in out_dir.glob(".snapshot_date=*.tmp"):
        try:
            os.kill(int(tmp.suffixes[-2][1:]), 0)  # the writer's pid, from write_atomically's name
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, and another user's


def write_snapshot_files(
    conn: duckdb.DuckDBPyConnection, table: str, key: str, out_dir: Path, first_day: dt.date, last_day: dt.date
) -> int:
    """One parquet and one CSV file per snapshot date: <out_dir>/snapshot_date=YYYY-MM-DD.*"""
    remove_orphaned_temp_files(out_dir)
    day, files = first_day, 0
    while day <= last_day:
        rows = conn.sql(
            f"SELECT * FROM {table} WHERE snapshot_date = $day ORDER BY {quote(key)}", params={"day": day}
        ).to_arrow_table()
        for suffix in (".parquet", ".csv"):
            write_atomically(rows, out_dir / f"snapshot_date={day.isoformat()}{suffix}")
            files += 1
        day += dt.timedelta(days=1)
    return files


def files_metadata(out_dir: Path, files: int) -> dict[str, dg.MetadataValue]:
    return {"files_written": dg.MetadataValue.int(files), "export_dir": dg.MetadataValue.path(str(out_dir.resolve()))}


def publish_export(
    conn: duckdb.DuckDBPyConnection, name: str, key: str, select_sql: str, export_dir: Path,
    first_day: dt.date, last_day: dt.date, params: dict | None = None,
) -> dict[str, dg.MetadataValue]:
    """Write a range of export.<name> with `select_sql` (and any `params` beyond the range and
    computed_at), then its files under <export_dir>/<name>/."""
    meta = write_range(conn, f"export.{name}", "snapshot_date", first_day, last_day, select_sql,
                       {**export_params(first_day, last_day), **(params or {})})
    out_dir = export_dir / name
    files = write_snapshot_files(conn, f"export.{name}", key, out_dir, first_day, last_day)
    return {**meta, **files_metadata(out_dir, files)}
