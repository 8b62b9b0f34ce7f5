"""The sync files: one parquet and one CSV file per snapshot date, written so readers never see half a file.

Every exported table (export.account_health, export.contact_usage, export.band_changes) is also
written as `<export dir>/<name>/snapshot_date=YYYY-MM-DD.parquet|csv`, keyed like the table,
so a CS tool that imports files upserts on the same key. A run writes its files into a staging
folder first, audits them with the table, and moves them into place only once the table's
transaction has committed, so the table and its files change together. CSV cells that a spreadsheet would run as a
formula are neutralised; the parquet files and the tables keep the values as they are.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from health_pipeline.sql import quote

# The folder under the export dir where runs stage their files: hidden, so importers skip it.
STAGING = ".staging"


def export_params(first_day: dt.date, last_day: dt.date) -> dict:
    """An export's parameters: its range, and computed_at, the run's clock in UTC."""
    return {"first_day": first_day, "last_day": last_day, "computed_at": dt.datetime.now(dt.UTC).replace(tzinfo=None)}


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = r"^[=+\-@\t\r]"


def spreadsheet_safe(table: pa.Table) -> pa.Table:
    """The table with every text cell that a spreadsheet would run as a formula prefixed with a
    single quote, as OWASP recommends for CSV files; numbers, being numbers, are left alone."""
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            risky = pc.match_substring_regex(column, FORMULA_STARTS)
            quoted = pc.binary_join_element_wise(pa.scalar("'", column.type), column, pa.scalar("", column.type))
            column = pc.if_else(risky, quoted, column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)


def write_atomically(table: pa.Table, path: Path) -> None:
    """Write a file so readers see the old one or the whole new one, never a partial file. A CSV
    file's text is made spreadsheet-safe (`spreadsheet_safe`); parquet keeps the values as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix == ".parquet":
            pq.write_table(table, tmp)
        else:
            pa_csv.write_csv(spreadsheet_safe(table), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_snapshot_files(
    conn: duckdb.DuckDBPyConnection, table: str, key: str, out_dir: Path, first_day: dt.date, last_day: dt.date
) -> int:
    """One parquet and one CSV file per snapshot date: <out_dir>/snapshot_date=YYYY-MM-DD.*

    The days are read one after another on the caller's connection (its transaction holds the
    rows), while a thread per core writes the files already read: pyarrow releases the GIL, so
    a backfill's thousands of files are written in parallel with the reads."""
    day, files, writing = first_day, 0, deque()
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while day <= last_day:
            rows = conn.sql(
                f"SELECT * FROM {table} WHERE snapshot_date = $day ORDER BY {quote(key)}", params={"day": day}
            ).to_arrow_table()
            writing += [pool.submit(write_atomically, rows, out_dir / f"snapshot_date={day.isoformat()}{suffix}")
                        for suffix in (".parquet", ".csv")]
            # At most a day per thread waits in memory: reads outpace writes, and a backfill's days
            # held all at once took 1.5 GB at scale M.
            while len(writing) > 2 * workers:
                writing.popleft().result()  # a failed write fails the export
                files += 1
            day += dt.timedelta(days=1)
        while writing:
            writing.popleft().result()
            files += 1
    return files


def files_metadata(out_dir: Path, files: int) -> dict[str, dg.MetadataValue]:
    return {"files_written": dg.MetadataValue.int(files), "export_dir": dg.MetadataValue.path(str(out_dir.resolve()))}


def staging_dir(export_dir: Path) -> Path:
    """Where a run writes its sync files before it publishes them: private to this process."""
    return export_dir / STAGING / str(os.getpid())


def remove_orphaned_staging(export_dir: Path) -> None:
    """Delete the staged files of runs that died before publishing them."""
    for run_dir in (export_dir / STAGING).glob("*"):
        try:
            os.kill(int(run_dir.name), 0)
        except (ProcessLookupError, ValueError):
            shutil.rmtree(run_dir, ignore_errors=True)
        except PermissionError:
            pass  # alive, and another user's


def move_into_place(staged: Path, export_dir: Path) -> int:
    """Move every staged file to the same place under `export_dir`; each move is one rename."""
    moved = 0
    for path in sorted(staged.rglob("snapshot_date=*")):
        target = export_dir / path.relative_to(staged)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        moved += 1
    discard(staged)
    return moved


def discard(staged: Path) -> None:
    """Remove a run's staging folder, and the staging root once no run has one."""
    shutil.rmtree(staged, ignore_errors=True)
    try:
        staged.parent.rmdir()
    except OSError:
        pass  # another run is staging too, or it is gone already
