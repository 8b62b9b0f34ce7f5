"""The write protocol: how every asset publishes the days it computed.

An asset computes its rows for a date range into a staging table (`stage_range`), then swaps
them in (`swap_range`: conform the columns, delete the range, insert) inside a `transaction`,
in which it can audit them before the commit (assets.publish_range). A rerun therefore
replaces exactly its own days, a reader never sees the range half-written, and a warehouse
built by an older version of an asset takes that asset's current columns instead of failing
the insert. `replace_date_range` and `write_range` are the same steps without an audit.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager

import dagster as dg
import duckdb

from health_pipeline.progress import report_progress
from health_pipeline.sql import quote, scalar


def stage(conn: duckdb.DuckDBPyConnection, name: str, select_sql: str, params=None) -> str:
    """Materialise a query into the temp table staged_<name>, so it runs once and can be inspected."""
    staging = f"staged_{name}"
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {staging} AS {select_sql}", params or {})
    return staging


class SchemaChangeError(RuntimeError):
    """A table's existing values cannot take the type its asset now writes."""


def conform_columns(conn: duckdb.DuckDBPyConnection, table: str, staging: str) -> None:
    """Give `table` exactly the columns of `staging`: the same names, order and types.

    A table written by an older version of its asset gains the new columns (NULL on days not
    re-run), loses the columns the asset no longer writes, and has changed types cast. The
    table is rewritten only when its schema differs, inside the caller's transaction.
    """
    wanted = [(name, dtype) for name, dtype, *_ in conn.execute(f"DESCRIBE {staging}").fetchall()]
    have = {name: dtype for name, dtype, *_ in conn.execute(f"DESCRIBE {table}").fetchall()}
    if list(have.items()) == wanted:
        return
    columns = ", ".join(
        f"CAST({quote(name) if name in have else 'NULL'} AS {dtype}) AS {quote(name)}" for name, dtype in wanted
    )
    try:
        conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT {columns} FROM {table}")
    except duckdb.ConversionException as exc:
        raise SchemaChangeError(
            f"{table}: existing rows cannot take the new column types ({str(exc).splitlines()[0]}). "
            f"Rebuild the table: "
            f"DROP TABLE {table}, then re-run its asset over the whole range."
        ) from exc


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection, tables: dict[str, str]):
    """One transaction in which an asset swaps its rows into `tables` (table -> its staging table)
    and audits them: committed when the block ends, rolled back if it raises, so a failed audit
    leaves the published tables exactly as they were."""
    for table, staging in tables.items():
        # Created and committed before the swap: DuckDB 2.0.0 hides the rows of a table created
        # and filled (beyond one row group) in the same transaction from later filtered reads until
        # the next checkpoint (test_warehouse.py). An empty table left by a failed run is harmless.
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {staging} LIMIT 0")
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def swap_range(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    date_column: str,
    first_day: dt.date,
    last_day: dt.date,
    staging: str,
) -> int:
    """Inside a `transaction`: replace the rows of `table` whose `date_column` is in the range with
    `staging`. Rows whose date is NULL belong to no day, so every rewrite replaces them too."""
    conform_columns(conn, table, staging)
    column = quote(date_column)
    conn.execute(
        f"DELETE FROM {table} WHERE {column} BETWEEN $first_day AND $last_day OR {column} IS NULL",
        {"first_day": first_day, "last_day": last_day},
    )
    conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {staging}")
    return scalar(conn, f"SELECT count(*) FROM {staging}")


def replace_date_range(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    date_column: str,
    first_day: dt.date,
    last_day: dt.date,
    staging: str,
) -> int:
    """Atomically replace the range's rows of `table` with `staging`, in a transaction of its own."""
    with transaction(conn, {table: staging}):
        return swap_range(conn, table, date_column, first_day, last_day, staging)


_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
          "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def memory_limit_bytes(conn: duckdb.DuckDBPyConnection) -> int:
    """DuckDB's memory limit for this connection, in bytes (it reports it as text: '1.8 GiB')."""
    number, unit = scalar(conn, "SELECT current_setting('memory_limit')").split()
    return int(float(number) * _UNITS[unit])


# Of DuckDB's memory limit, the share one batch's working set is sized to: the rest is left for
# the hash tables and sorts around it.
BATCH_MEMORY_SHARE = 0.5


def plan_batches(conn: duckdb.DuckDBPyConnection, first_day: dt.date, last_day: dt.date, bytes_per_day: int,
                 why: str) -> dict:
    """How many days one batch of [first_day, last_day] holds: as many as BATCH_MEMORY_SHARE of
    DuckDB's memory limit fits at `bytes_per_day`, at least one and at most the range. Returns
    batch_days, batches and batch_plan, the sentence the run's metadata shows (`why` says what a
    day costs)."""
    limit = memory_limit_bytes(conn)
    range_days = (last_day - first_day).days + 1
    days = max(1, min(range_days, int(limit * BATCH_MEMORY_SHARE) // max(1, bytes_per_day)))
    batches = -(-range_days // days)
    return {
        "batch_days": days,
        "batches": batches,
        "batch_plan": f"{batches} batch{'es' if batches > 1 else ''} of up to {days} day{'s' if days > 1 else ''}: "
                      f"{why}, and half of DuckDB's memory limit ({limit / 2**30:.1f} GiB) holds {days} such days",
    }


def day_batches(first_day: dt.date, last_day: dt.date, days: int):
    """[first_day, last_day] cut into consecutive (first, last) pieces of at most `days` days."""
    while first_day <= last_day:
        batch_last = min(last_day, first_day + dt.timedelta(days=days - 1))
        yield first_day, batch_last
        first_day = batch_last + dt.timedelta(days=1)


def stage_range(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    first_day: dt.date,
    last_day: dt.date,
    select_sql: str,
    params=None,
    batch_days: int | None = None,
) -> str:
    """Compute a range of days of `table` with `select_sql` into a staging table; return its name.

    With `batch_days`, the query runs once per batch of that many days (its named parameters
    first_day and last_day set to the batch), so a long backfill's working set stays within
    DuckDB's memory instead of spilling.
    """
    if not batch_days:
        return stage(conn, table.replace(".", "_"), select_sql, params)
    staging = stage(conn, table.replace(".", "_"), f"{select_sql} LIMIT 0",
                    {**params, "first_day": first_day, "last_day": first_day})
    for batch_first, batch_last in day_batches(first_day, last_day, batch_days):
        if (batch_first, batch_last) != (first_day, last_day):
            report_progress(f"{table}: days {batch_first} .. {batch_last} of {first_day} .. {last_day}")
        conn.execute(f"INSERT INTO {staging} {select_sql}",
                     {**params, "first_day": batch_first, "last_day": batch_last})
    return staging


def write_range(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    date_column: str,
    first_day: dt.date,
    last_day: dt.date,
    select_sql: str,
    params=None,
    batch_days: int | None = None,
) -> dict[str, dg.MetadataValue]:
    """Compute a range of days with `select_sql`, swap them into `table`, and describe the result."""
    staging = stage_range(conn, table, first_day, last_day, select_sql, params, batch_days)
    rows = replace_date_range(conn, table, date_column, first_day, last_day, staging)
    return table_metadata(conn, table, rows, (date_column, first_day, last_day))


def replace_table(conn: duckdb.DuckDBPyConnection, table: str, staging: str) -> int:
    """Replace a whole snapshot table with `staging`: one statement, so atomic on its own."""
    conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {staging}")
    return scalar(conn, f"SELECT count(*) FROM {table}")


def table_metadata(
    conn: duckdb.DuckDBPyConnection, table: str, row_count: int,
    dated: tuple | None = None, **extra,
) -> dict[str, dg.MetadataValue]:
    """Row count and column schema for the UI, plus any asset-specific figures. A `dated` table
    also gets `per_day`, each day's figures, which assets.materialized records on that day's
    partition: `dated` is day_figures' arguments after the table (its date column, the first and
    last day the run wrote, and optionally the column to count each day's rows by and a prefix)."""
    columns = [
        dg.TableColumn(name=name, type=dtype, description=None)
        for name, dtype, *_ in conn.execute(f"DESCRIBE {table}").fetchall()
    ]
    return {
        "dagster/row_count": dg.MetadataValue.int(row_count),
        "dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns)),
        "dagster/table_name": dg.MetadataValue.text(table),
        **({PER_DAY: dg.MetadataValue.json(day_figures(conn, table, *dated))} if dated else {}),
        **extra,
    }


PER_DAY = "per_day"  # day -> {figure: value}: what each partition of the run records as its own


def day_figures(conn: duckdb.DuckDBPyConnection, table: str, date_column: str, first_day: dt.date,
                last_day: dt.date, by: str | None = None, prefix: str = "") -> dict[str, dict[str, int]]:
    """Per day of the range: the table's rows on that day (`rows`), and with `by`, its rows per
    value of that column (`<prefix><value>`). Days without rows count 0."""
    value = f"coalesce(CAST({quote(by)} AS VARCHAR), 'none')" if by else "NULL"
    figures: dict[str, dict[str, int]] = {}
    for day, of_value, n in conn.execute(
        f"""
        WITH "days" AS (SELECT CAST("d" AS DATE) AS "day"
                        FROM unnest(generate_series(CAST($first_day AS TIMESTAMP), CAST($last_day AS TIMESTAMP),
                                                    INTERVAL 1 DAY)) AS "t"("d")),
             "rows_per_value" AS (SELECT {quote(date_column)} AS "day", {value} AS "value", count(*) AS "n"
                                  FROM {table} WHERE {quote(date_column)} BETWEEN $first_day AND $last_day
                                  GROUP BY ALL)
        SELECT "days"."day", "value", coalesce("n", 0) FROM "days" LEFT JOIN "rows_per_value" USING ("day")
        ORDER BY ALL
        """, {"first_day": first_day, "last_day": last_day}).fetchall():
        day_of = figures.setdefault(day.isoformat(), {"rows": 0})
        day_of["rows"] += n
        if by and of_value is not None:
            day_of[f"{prefix}{of_value}"] = n
    return figures
