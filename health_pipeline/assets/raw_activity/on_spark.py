"""raw_activity's event stage on Spark (HEALTH_ENGINE=spark): the same templates as on DuckDB, run
through health_pipeline.engines.spark, and the ledger and the fact written, audited and published
in the lake (health_pipeline.engines.lake).

DuckDB still reads the dimensions and decides whose activity counts (activity_attribution), which
Spark receives as a table. Spark reads the raw sessions and events of the range (the raw reader:
a view of the parquet files with each row's file and row number, `read_raw`), classifies and
deduplicates them against the published ledger (`stage_classified`, as DuckDB does), stages the
loaded sessions and events and the fact counted from them, and collects the bad rows, which DuckDB
files in raw.quarantine with the dimensions' ones. A day outside the range whose stored copy of an
id lost to an earlier copy in it is extracted again, as on DuckDB (its sessions too, from the raw
files). The range is one step: Spark spills what does not fit, so it needs no batches of days.

Then, inside the DuckDB transaction that swaps the snapshots and the quarantine: the raw_events
checks run on Spark over the ledger as it will be published, the accounts check on DuckDB, and only
when both pass does Spark publish the staged days; core.daily_contact_activity is a DuckDB view of
the published fact, which every later stage reads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import duckdb

from health_pipeline.assets.raw_activity.asset import (
    SQL,
    ActivityTable,
    _bounds,
    _figures,
    _metadata,
    _range,
    activity_tables,
    fact_params,
    facts_rewritten,
    future_limit,
    outcome_counts,
    stage_classified,
    stage_inputs,
    swap_dimensions,
)
from health_pipeline.checks import AuditContext, audit
from health_pipeline.engines import EventEngine
from health_pipeline.engines.lake import PARTITION, Lake
from health_pipeline.engines.spark import SparkEngineError, SparkSql, failing_as, view_of
from health_pipeline.progress import report_progress
from health_pipeline.publish import swap_range, transaction
from health_pipeline.raw_input import SOURCE_FILE_COLUMN, RawInputError, RawTable
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sources import RawSource

LEDGERS = ("raw.sessions", "raw.events")
FACT = "core.daily_contact_activity"
# Every template the event stage runs on Spark, besides publish.day_figures' statement for the
# metadata: each is transpiled without a JVM (test_spark_sql.py) and its rows compared between
# the engines (test_spark_engine.py).
SPARK_TEMPLATES = tuple(f"assets/raw_activity/{name}.sql" for name in (
    "activity_in_range", "kept_copies", "stored_elsewhere", "activity_classified", "activity_loaded",
    "suspect_rows", "superseded_days", "events_counted", "daily_contact_activity", "quarantine_rows",
    "quarantine_classified_rows", "quarantine_undated_rows", "event_names_in_another_case",
)) + tuple(f"checks/{name}.sql" for name in (
    "raw_ids_and_times", "raw_ids_unique", "raw_times_in_partition", "activity_per_day"))


def read_raw(spark: SparkSql, table: RawTable) -> RawTable:
    """`table` as the Spark engine reads it: a temp view of its parquet files with the columns
    DuckDB's reader gives (the file a row came from, its row number in the file), and times as
    DuckDB reads them (nanosecond timestamps, which Spark reads as numbers, converted)."""
    from pyspark.sql import functions as F

    if table.is_csv:
        raise RawInputError(f"raw table '{table.name}' ({table.path}) is CSV: the Spark engine reads raw events "
                            "and sessions from parquet; convert them, or run with HEALTH_ENGINE=duckdb")
    rows = spark.session.read.option("mergeSchema", "true").parquet(*table.files)
    spark_types = dict(rows.dtypes)
    columns = []
    for column in rows.columns:
        read_as = table.column_types.get(column.lower(), "")
        if read_as.startswith("TIMESTAMP") and spark_types[column] == "bigint":  # nanoseconds since 1970
            instant = F.timestamp_micros(F.expr(f"`{column}` div 1000"))  # truncated to micros, as DuckDB does
            columns.append((instant if "TIME ZONE" in read_as else instant.cast("timestamp_ntz")).alias(column))
        else:
            columns.append(F.col(column))
    # Spark names a file by its URI (file:/…, spaces as %20): the path, as DuckDB names it.
    path = F.regexp_replace(F.col("_metadata.file_path"), "^file:(//)?", "")
    source_file = F.url_decode(F.replace(path, F.lit("+"), F.lit("%2B")))
    view = f"raw_{table.name}_files"
    spark.register(view, rows.select(*columns, source_file.alias(SOURCE_FILE_COLUMN),
                                     F.col("_metadata.row_index").alias("file_row_number")), materialise=False)
    return replace(table, view=view)


@dataclass
class SparkExtraction:
    """The run's event stage on Spark: what it staged so far, and its figures."""

    spark: SparkSql
    lake: Lake
    sessions: ActivityTable
    events: ActivityTable
    config: HealthConfig
    future_limit: dt.datetime
    days: list[dt.date]  # every day staged
    schemas: dict  # lake table -> the schema of its staged rows

    def step(self, first_day: dt.date, last_day: dt.date) -> dict:
        """Extract [first_day, last_day] from the raw files into the staged ledger and fact, and
        their bad rows into quarantine_rows; return the rows per outcome and the days outside it
        whose stored copies lost to earlier ones here."""
        spark, bounds = self.spark, _bounds(first_day, last_day, self.future_limit)
        for activity, ledger in zip((self.sessions, self.events), LEDGERS, strict=True):
            stage_classified(spark, activity, bounds, stored=spark.table_exists(ledger))
        superseded = {ledger: SQL.run(spark, "superseded_days", _range(bounds), activity=activity).fetchall()
                      if spark.table_exists(ledger) else []
                      for activity, ledger in zip((self.sessions, self.events), LEDGERS, strict=True)}
        days = [first_day + dt.timedelta(days=n) for n in range((last_day - first_day).days + 1)]
        first = not self.days
        for activity, ledger in zip((self.sessions, self.events), LEDGERS, strict=True):
            self._stage(spark.table(f"{activity.name}_loaded"), ledger, first)
        self.days += days
        self._as_published(LEDGERS)
        params = {**fact_params(self.config), **_range(bounds)}
        SQL.run(spark, "events_counted", params, config=self.config)
        self._stage(spark.execute(SQL.render("daily_contact_activity", config=self.config), params).df, FACT, first)
        self._as_published((FACT,))
        for activity in (self.sessions, self.events):
            SQL.run(spark, "quarantine_classified_rows", {"source_table": activity.raw.name},
                    classified=f"{activity.name}_suspect_classified", activity=activity)
        return {
            "sessions": dict(spark.execute("SELECT outcome, count(*) FROM sessions_classified GROUP BY outcome")
                             .fetchall()),
            "events": dict(spark.execute("SELECT outcome, sum(events) FROM events_counted GROUP BY ALL").fetchall()),
            "misspelled": spark.execute(SQL.render("event_names_in_another_case"),
                                        {"tracked_events": list(self.config.tracked_events)}).fetchall(),
            "superseded": superseded,
        }

    def _stage(self, rows, table: str, first: bool) -> None:
        self.schemas[table] = rows.schema
        self.lake.stage(rows, table, first)

    def _as_published(self, tables) -> None:
        """Each of `tables`, under its warehouse name, as publishing what is staged will leave it."""
        for table in tables:
            self.spark.register(view_of(table), self.lake.as_published(self.spark, table, self.days,
                                                                     self.schemas[table]), materialise=False)

    def publish(self) -> None:
        for table in (*LEDGERS, FACT):
            self.lake.publish(self.spark, table, self.days, self.schemas[table])
        self.lake.discard_staging()
        for table in (*LEDGERS, FACT):  # the published tables, for the run's metadata
            self.spark.register(view_of(table), self.lake.published(self.spark, table), materialise=False)


def extract_on_spark(conn: duckdb.DuckDBPyConnection, spark: SparkSql, lake: Lake, tables: dict,
                     config: HealthConfig, first_day: dt.date, last_day: dt.date,
                     future_limit: dt.datetime) -> tuple[dict, SparkExtraction]:
    """Stage the range's ledger and fact in the lake, and its bad activity rows in DuckDB's
    quarantine_rows; nothing is published. Returns the figures swap_staged returns on DuckDB (the
    rows written per lake table, the events' outcomes, the days extracted again) and the extraction."""
    from pyspark.sql import functions as F

    with failing_as(SparkEngineError, "the event stage on Spark failed"):
        spark.register_arrow("activity_attribution", conn.sql("SELECT * FROM activity_attribution").to_arrow_table())
        sessions, events = (replace(a, raw=read_raw(spark, a.raw)) for a in activity_tables(tables))
        for ledger in LEDGERS:
            if (published := lake.published(spark, ledger)) is not None:
                spark.register(view_of(ledger), published, materialise=False)
        SQL.run(spark, "quarantine_rows")
        extraction = SparkExtraction(spark, lake, sessions, events, config, future_limit, [], {})
        figures = extraction.step(first_day, last_day)
        again = sorted({day for found in figures["superseded"].values() for day, _ in found
                        if not first_day <= day <= last_day})
        for day in again:
            extraction.step(day, day)
        for activity in (sessions, events):
            SQL.run(spark, "quarantine_undated_rows",
                    {**activity.raw.params, "source_table": activity.raw.name, "future_limit": future_limit},
                    activity=activity)
        written = {table: spark.table(table).where(F.col(PARTITION).isin(extraction.days)).count()
                   for table in (*LEDGERS, FACT)}
        # The bad activity rows join the dimensions' in DuckDB's quarantine_rows, which the swap files.
        conn.register("quarantined_on_spark", spark.table("quarantine_rows").toArrow())
        conn.execute("INSERT INTO quarantine_rows SELECT * FROM quarantined_on_spark")
        conn.unregister("quarantined_on_spark")
    superseded = figures["superseded"]
    return {
        **written,
        "sessions_superseded_on_later_days": sum(n for _, n in superseded["raw.sessions"]),
        "events_superseded_on_later_days": sum(n for _, n in superseded["raw.events"]),
        "days_extracted_again": again,
        "events_outcomes": figures["events"],
        "events_misspelled": {(name, tracked): n for name, tracked, n in figures["misspelled"]},
        "sessions_counts": outcome_counts("sessions", figures["sessions"]),
    }, extraction

def run_on_spark(conn: duckdb.DuckDBPyConnection, engine: EventEngine, raw: RawSource, config: HealthConfig,
                 first_day: dt.date, last_day: dt.date, now: dt.datetime, checks: AuditContext):
    """raw_activity on the Spark engine: stage the dimensions in DuckDB and the events in the lake,
    then in one DuckDB transaction swap the snapshots and the quarantine in, audit the staged ledger
    on Spark and the snapshot on DuckDB, and publish the lake's days last, so a failure anywhere
    leaves both as they were. Yields the check results; returns each asset's metadata."""
    spark, lake = engine.spark(), engine.lake()
    tables, counts = stage_inputs(conn, raw, config)
    report_progress(f"reading raw sessions and events on Spark for {first_day} .. {last_day}")
    written, extraction = extract_on_spark(conn, spark, lake, tables, config, first_day, last_day,
                                           future_limit(raw, now))
    counts |= written.pop("sessions_counts") | {"events_batch_plan": "one step on Spark, which spills what "
                                                                    "does not fit in memory"}
    try:
        with transaction(conn, {"raw.quarantine": "quarantine_rows"}):
            written |= swap_dimensions(conn, first_day, last_day, now)
            for day in written["days_extracted_again"]:  # their activity's bad rows are filed again
                conn.execute("DELETE FROM raw.quarantine WHERE partition_date = $day", {"day": day})
            swap_range(conn, "raw.quarantine", "partition_date", first_day, last_day, "quarantine_rows")
            written |= facts_rewritten(conn, first_day, last_day)
            with failing_as(SparkEngineError, "auditing the staged ledger on Spark failed"):
                yield from audit(config, "raw_events", spark, first_day, last_day, checks)
            yield from audit(config, "accounts", conn, first_day, last_day, checks)
            SQL.run(conn, "accepted_snapshot", {"accepted_at": now})
            report_progress(f"publishing {len(extraction.days)} days in the lake {lake.root}")
            with failing_as(SparkEngineError, "publishing the lake's days failed"):
                extraction.publish()
            if lake.has(FACT):
                SQL.run(conn, "fact_in_the_lake", files=str(lake.path(FACT) / f"{PARTITION}=*" / "*.parquet"))
    except BaseException:
        lake.discard_staging()
        raise
    metadata = _metadata(conn, _figures(conn, counts, written, first_day, last_day), first_day, last_day,
                         lake=spark)
    for asset, table in (("raw_sessions", "raw.sessions"), ("raw_events", "raw.events"),
                         ("daily_contact_activity", FACT)):
        metadata[asset] |= {"engine": "spark", "lake_path": str(lake.path(table))}
    return metadata
