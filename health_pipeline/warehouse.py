"""The DuckDB warehouse: its resource, and the one way every stage writes a partition.

Every stage computes its rows for a date range into a staging table, then swaps them in
with `replace_date_range`: create-if-missing, conform the columns, delete the range, insert,
all in one transaction. A rerun therefore replaces exactly its own days, a reader never
sees the range half-written, and a warehouse built by an older version of a stage takes
that stage's current columns instead of failing the insert.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import dagster as dg
import duckdb
from dagster._utils.backoff import backoff
from dagster_duckdb import DuckDBResource
from pydantic import Field

SCHEMAS = ("raw", "core", "export")


class Warehouse(DuckDBResource):
    """The DuckDB file every stage reads and writes. Sessions run in UTC.

    `memory_limit` and `threads` bound what one run may use (DuckDB spills larger work to
    disk next to the database); `connection_config` takes any other DuckDB setting.
    """

    # DuckDB lets one process hold the file (one writer, or readers only), so every step
    # that opens it runs in this Dagster concurrency pool; dagster.yaml gives it one slot.
    POOL: ClassVar[str] = "warehouse"

    memory_limit: str | None = Field(
        default=None, description="DuckDB memory_limit, such as '2GB'. Unset: DuckDB's default, 80% of RAM."
    )
    threads: int | None = Field(default=None, description="DuckDB threads. Unset: one per core.")

    @property
    def duckdb_settings(self) -> dict:
        limits = {"memory_limit": self.memory_limit, "threads": self.threads}
        return {**self.connection_config, **{k: v for k, v in limits.items() if v}}

    @contextmanager
    def get_connection(self, read_only: bool = False):
        if not read_only and self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        # A second writer gets "Could not set lock on file": retry with backoff, as
        # DuckDBResource does, so a queued run waits instead of failing at once.
        conn = backoff(
            fn=duckdb.connect,
            retry_on=(RuntimeError, duckdb.IOException),
            kwargs={
                "database": self.database,
                "read_only": read_only,
                "config": {"custom_user_agent": "health_pipeline", **self.duckdb_settings},
            },
            max_retries=10,
        )
        try:
            # ICU is loaded only after connect, so this cannot go in the connect config.
            conn.execute("SET TimeZone = 'UTC'")
            if not read_only:
                for schema in SCHEMAS:
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            yield conn
        finally:
            conn.close()


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, params=None):
    """The single value a query returns (the result is drained, as DuckDB 2 requires)."""
    return conn.execute(sql, params or []).fetchall()[0][0]


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    return scalar(
        conn, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", [schema, name]
    ) > 0


def counts_by(conn: duckdb.DuckDBPyConnection, table: str, column: str, first_day, last_day) -> dict:
    """Rows per value of `column` over a range of snapshot dates, for a stage's metadata."""
    return dict(conn.execute(
        f"SELECT coalesce(CAST({quote(column)} AS VARCHAR), 'none'), count(*) FROM {table}"
        " WHERE snapshot_date BETWEEN ? AND ? GROUP BY ALL ORDER BY ALL",
        [first_day, last_day],
    ).fetchall())


def date_range(window: dg.TimeWindow) -> tuple[dt.date, dt.date]:
    """The first and last UTC day (both inclusive) of a daily partition window."""
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()


def stage(conn: duckdb.DuckDBPyConnection, name: str, select_sql: str, params=None) -> str:
    """Materialise a query into a temp table so it runs once and can be inspected."""
    staging = f"staged_{name}"
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {staging} AS {select_sql}", params or [])
    return staging


class SchemaChangeError(RuntimeError):
    """A table's existing values cannot take the type its stage now writes."""


def conform_columns(conn: duckdb.DuckDBPyConnection, table: str, staging: str) -> None:
    """Give `table` exactly the columns of `staging`: the same names, order and types.

    A table written by an older version of its stage gains the new columns (NULL on days not
    re-run), loses the columns the stage no longer writes, and has changed types cast. The
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


def replace_date_range(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    date_column: str,
    first_day: dt.date,
    last_day: dt.date,
    staging: str,
) -> int:
    """Atomically replace the rows of `table` whose `date_column` is in the range with `staging`.

    Rows whose date is NULL belong to no day, so every rewrite replaces them too.
    """
    # Created and committed before the swap: DuckDB 2.0.0 hides the rows of a table created and
    # filled (beyond one row group) in the same transaction from later filtered reads until the
    # next checkpoint (test_warehouse.py). An empty table left by a failed first run is harmless.
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {staging} LIMIT 0")
    conn.execute("BEGIN TRANSACTION")
    try:
        conform_columns(conn, table, staging)
        conn.execute(
            f"DELETE FROM {table} WHERE {quote(date_column)} BETWEEN ? AND ? OR {quote(date_column)} IS NULL",
            [first_day, last_day],
        )
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {staging}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return scalar(conn, f"SELECT count(*) FROM {staging}")


def day_batches(first_day: dt.date, last_day: dt.date, days: int):
    """[first_day, last_day] cut into consecutive (first, last) pieces of at most `days` days."""
    while first_day <= last_day:
        batch_last = min(last_day, first_day + dt.timedelta(days=days - 1))
        yield first_day, batch_last
        first_day = batch_last + dt.timedelta(days=1)


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
    """Compute a range of days with `select_sql`, swap them into `table`, and describe the result.

    With `batch_days`, the query runs once per batch of that many days (its named parameters
    first_day and last_day set to the batch), so a long backfill's working set stays within
    DuckDB's memory instead of spilling; the whole range is still swapped in one transaction.
    """
    if not batch_days:
        staging = stage(conn, table.replace(".", "_"), select_sql, params)
    else:
        staging = stage(conn, table.replace(".", "_"), f"{select_sql} LIMIT 0",
                        {**params, "first_day": first_day, "last_day": first_day})
        for batch_first, batch_last in day_batches(first_day, last_day, batch_days):
            conn.execute(f"INSERT INTO {staging} {select_sql}",
                         {**params, "first_day": batch_first, "last_day": batch_last})
    rows = replace_date_range(conn, table, date_column, first_day, last_day, staging)
    return table_metadata(conn, table, rows)


def replace_table(conn: duckdb.DuckDBPyConnection, table: str, staging: str) -> int:
    """Replace a whole snapshot table with `staging`: one statement, so atomic on its own."""
    conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {staging}")
    return scalar(conn, f"SELECT count(*) FROM {table}")


def table_metadata(
    conn: duckdb.DuckDBPyConnection, table: str, row_count: int, **extra
) -> dict[str, dg.MetadataValue]:
    """Row count and column schema for the UI, plus any stage-specific figures."""
    columns = [
        dg.TableColumn(name=name, type=dtype, description=None)
        for name, dtype, *_ in conn.execute(f"DESCRIBE {table}").fetchall()
    ]
    return {
        "dagster/row_count": dg.MetadataValue.int(row_count),
        "dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns)),
        "dagster/table_name": dg.MetadataValue.text(table),
        **extra,
    }
