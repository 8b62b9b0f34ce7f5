"""The DuckDB warehouse: its resource, and the one way every stage writes a partition.

Every stage computes its rows for a date range into a staging table, then swaps them in
with `replace_date_range`: create-if-missing, add-new-columns, delete the range, insert,
all in one transaction. A rerun therefore replaces exactly its own days, a reader never
sees the range half-written, and a warehouse built by an older version gains new columns
instead of failing the insert.
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

SCHEMAS = ("raw", "core", "export")


class Warehouse(DuckDBResource):
    """The DuckDB file every stage reads and writes. Sessions run in UTC.

    `connection_config` takes DuckDB settings such as {"threads": 2, "memory_limit": "4GB"}.
    """

    # DuckDB lets one process hold the file (one writer, or readers only), so every step
    # that opens it runs in this Dagster concurrency pool; dagster.yaml gives it one slot.
    POOL: ClassVar[str] = "warehouse"

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
                "config": {"custom_user_agent": "health_pipeline", **self.connection_config},
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


def date_range(window: dg.TimeWindow) -> tuple[dt.date, dt.date]:
    """The first and last UTC day (both inclusive) of a daily partition window."""
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()


def stage(conn: duckdb.DuckDBPyConnection, name: str, select_sql: str, params=None) -> str:
    """Materialise a query into a temp table so it runs once and can be inspected."""
    staging = f"staged_{name}"
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {staging} AS {select_sql}", params or [])
    return staging


def replace_date_range(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    date_column: str,
    first_day: dt.date,
    last_day: dt.date,
    staging: str,
) -> int:
    """Atomically replace the rows of `table` whose `date_column` is in the range with `staging`."""
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {staging} LIMIT 0")
        existing = {r[0] for r in conn.execute(f"DESCRIBE {table}").fetchall()}
        for column, dtype, *_ in conn.execute(f"DESCRIBE {staging}").fetchall():
            if column not in existing:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote(column)} {dtype}")
        conn.execute(
            f"DELETE FROM {table} WHERE {quote(date_column)} BETWEEN ? AND ?", [first_day, last_day]
        )
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {staging}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return scalar(conn, f"SELECT count(*) FROM {staging}")


def write_range(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    date_column: str,
    first_day: dt.date,
    last_day: dt.date,
    select_sql: str,
    params=None,
) -> dict[str, dg.MetadataValue]:
    """Compute a range of days with `select_sql`, swap them into `table`, and describe the result."""
    staging = stage(conn, table.replace(".", "_"), select_sql, params)
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
