"""The Spark session the event stage runs on, and `SparkSql`, which runs the project's DuckDB-dialect
statements on it the way health_pipeline.sql runs them on DuckDB: `SqlFolder.run(spark, name, …)`
renders the same template, and `execute` writes it for Spark (spark_sql.transpile) and carries it out.

A session is local (`local[*]`, in a JVM this process starts) or, with a Spark Connect URL, the
cluster's. Either way it runs in UTC, and reads nanosecond parquet timestamps (which pandas
writes, and Spark refuses) as the numbers they are, which the raw reader converts.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import TYPE_CHECKING

from health_pipeline.engines.spark_sql import transpile, view_name
from health_pipeline.redaction import redact

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

LOCAL_MASTER = "local[*]"
# Settings every session gets, a cluster's included (they are the session's own, not the cluster's).
SESSION_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    # Plain parquet timestamps that DuckDB reads as TIMESTAMP, not Spark's legacy INT96.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}
# Only a local session's JVM takes these, when it starts.
LOCAL_SETTINGS = {"spark.ui.enabled": "false", "spark.driver.memory": "2g", "spark.sql.shuffle.partitions": "8"}


class SparkEngineError(RuntimeError):
    """Spark cannot be started or reached, or failed on the event stage: one line, redacted."""


def first_line(exc: BaseException) -> str:
    """A Spark error's first line, without the JVM's stack trace."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(remote: str) -> SparkSql:
    """A Spark session: the Spark Connect server at `remote` (sc://host:port), else a local one."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkEngineError("HEALTH_ENGINE=spark needs pyspark, which the spark extra installs: "
                               "pip install -e '.[spark]'") from None
    where = "the Spark Connect server HEALTH_SPARK_REMOTE names" if remote else f"a local Spark ({LOCAL_MASTER})"
    try:
        if remote:
            session = SparkSession.builder.remote(remote).getOrCreate()
        else:
            builder = SparkSession.builder.master(LOCAL_MASTER).appName("health_pipeline")
            for key, value in LOCAL_SETTINGS.items():
                builder = builder.config(key, value)
            session = builder.getOrCreate()
        for key, value in SESSION_SETTINGS.items():
            session.conf.set(key, value)
    except Exception as exc:  # a refused connection, a missing Java: each library raises its own
        raise SparkEngineError(redact(f"cannot start {where}: {first_line(exc)}")) from None
    return SparkSql(session)


def _spark_value(value):
    """A parameter's value as Spark binds it: a naive time is UTC (else Spark reads it as the local time)."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


class SparkResult:
    """What `SparkSql.execute` returns: the rows of a query (`df`), fetched like DuckDB's."""

    def __init__(self, df: DataFrame | None):
        self.df = df

    def fetchall(self) -> list[tuple]:
        return [] if self.df is None else [tuple(row) for row in self.df.collect()]

    def arrow(self) -> pa.Table:
        return self.df.toArrow()


class SparkSql:
    """A session, run like a DuckDB connection: `execute(duckdb_sql, params)`. A temp table is the
    query's rows materialised once (localCheckpoint) under its name, as DuckDB's temp tables are."""

    def __init__(self, session: SparkSession):
        self.session = session

    def execute(self, sql: str, params: dict | None = None) -> SparkResult:
        args = {name: _spark_value(value) for name, value in (params or {}).items()} or None
        result = SparkResult(None)
        for statement in transpile(sql):
            rows = self.session.sql(statement.sql, args=args)
            if statement.kind == "query":
                result = SparkResult(rows)
            elif statement.kind == "insert":
                held = self.session.table(statement.name)
                self.register(statement.name, held.unionByName(rows) if statement.by_name else held.union(rows))
            elif statement.kind == "table":
                self.register(statement.name, rows)
        return result

    def register(self, name: str, rows: DataFrame, materialise: bool = True) -> DataFrame:
        """Name `rows` as the temp view `name`, computed once now unless `materialise` is false."""
        rows = rows.localCheckpoint() if materialise else rows
        rows.createOrReplaceTempView(name)
        return rows

    def register_arrow(self, name: str, table: pa.Table) -> DataFrame:
        """A table of this process (the dimensions DuckDB staged) as the temp view `name` on Spark."""
        return self.register(name, self.session.createDataFrame(table))

    def table_exists(self, table: str) -> bool:
        return self.session.catalog.tableExists(view_of(table))

    def table(self, table: str) -> DataFrame:
        return self.session.table(view_of(table))

    def close(self) -> None:
        self.session.stop()


def view_of(table: str) -> str:
    """The temp view a warehouse table (schema.name) is on Spark (spark_sql.view_name); a temp
    table's own name."""
    from sqlglot import exp

    schema, name = table.split(".") if "." in table else (None, table)
    return view_name(exp.table_(name, db=schema))


@contextmanager
def failing_as(error: type[Exception], what: str):
    """A Spark failure inside the block as `error`, one line naming `what`, redacted and unchained."""
    from pyspark.errors import PySparkException

    try:
        yield
    except PySparkException as exc:
        raise error(redact(f"{what}: {first_line(exc)}")) from None
