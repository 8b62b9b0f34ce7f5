"""The event stage on Spark (HEALTH_ENGINE=spark), through a real Spark Connect server started from
pyspark's own JARs on 127.0.0.1 (spark_server.py), one per module: equality is the test.

- The sample run gives the same exports on each engine (computed_at aside), and again after a rerun
  of a day, which deduplicates against the published ledger; so does the sample read as Heap's S3
  delivery, landed as parquet by the source (health_pipeline.sources) that both engines read.
- Every statement the event stage runs on Spark gives the same rows on each engine, on the same
  inputs (crafted bad rows, duplicates, copies stored on other days included).
- Write, audit, publish: a failed check leaves the published lake as it was; a day that became
  empty is removed.
"""

from __future__ import annotations

import datetime as dt
import functools
import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from health_pipeline.assets.raw_activity import on_spark
from health_pipeline.assets.raw_activity.asset import (
    RAW_ACTIVITY_ASSETS,
    SQL,
    _bounds,
    _range,
    activity_tables,
    fact_params,
    stage_classified,
    stage_inputs,
)
from health_pipeline.checks import SQL as CHECKS_SQL
from health_pipeline.engines import EventEngine
from health_pipeline.engines.lake import FOLDERS
from health_pipeline.engines.spark import connect
from health_pipeline.publish import day_figures
from health_pipeline.sample import SampleSpec, generate_sample, write_heap_delivery
from health_pipeline.scorecard.parser import load_config
from health_pipeline.sources import FolderSource, HeapS3Source
from health_pipeline.sql import PACKAGE_DIR, SqlFolder
from health_pipeline_tests.conftest import Pipeline
from health_pipeline_tests.spark_server import SparkConnectServer, require_spark

require_spark()
pytestmark = [pytest.mark.spark, pytest.mark.slow]

SPEC = SampleSpec(accounts=8, days=12, seed=2)


@pytest.fixture(scope="module")
def server():
    started = SparkConnectServer()
    yield started
    started.stop()


def _spark_pipeline(root: Path, server: SparkConnectServer, **options) -> Pipeline:
    return Pipeline(root, engine=EventEngine(name="spark", spark_remote=server.url, lake_dir=str(root / "lake")),
                    **options)


def _exports(pipeline: Pipeline) -> dict[str, list]:
    """Every export file's rows (parquet and CSV), computed_at left out, sorted."""
    rows = {}
    with duckdb.connect() as conn:
        for path in sorted(pipeline.export_dir.rglob("*")):
            if path.suffix not in (".parquet", ".csv") or ".staging" in path.parts:
                continue
            reader = "read_parquet" if path.suffix == ".parquet" else "read_csv_auto"
            frame = conn.execute(f"SELECT * FROM {reader}($path)", {"path": str(path)}).df()
            frame = frame.drop(columns=[c for c in frame.columns if c == "computed_at"])
            rows[str(path.relative_to(pipeline.export_dir))] = sorted(map(repr, frame.itertuples(index=False)))
    return rows


def _lake_files(pipeline: Pipeline) -> dict[str, bytes]:
    lake = pipeline.root / "lake"
    return {str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def runs(server, tmp_path_factory):
    """The sample run on each engine, and the Spark run's day 2026-06-06 run again."""
    duck = Pipeline(tmp_path_factory.mktemp("duckdb"))
    generate_sample(duck.raw_dir, SPEC)
    spark = _spark_pipeline(tmp_path_factory.mktemp("spark"), server)
    shutil.copytree(duck.raw_dir, spark.raw_dir)
    duck.materialize(SPEC.start, SPEC.end)
    spark.materialize(SPEC.start, SPEC.end)
    return duck, spark


def test_the_sample_run_gives_identical_exports_on_each_engine(runs):
    duck, spark = runs
    expected = _exports(duck)
    assert len(expected) >= 3 * SPEC.days  # account_health, contact_usage, band_changes, per day
    assert _exports(spark) == expected
    # Re-running a day deduplicates against the published ledger and changes nothing.
    spark.materialize("2026-06-06", "2026-06-06")
    assert _exports(spark) == expected


def test_the_lake_holds_spark_committed_day_partitions_and_duckdb_reads_the_fact(runs):
    duck, spark = runs
    lake = spark.root / "lake"
    days = [f"activity_date={SPEC.start + dt.timedelta(days=n)}" for n in range(SPEC.days)]
    for folder in FOLDERS.values():
        assert sorted(p.name for p in (lake / folder).iterdir() if p.is_dir()) == days, folder
        # Written by Spark's committer: its part files, each with its checksum.
        for day in days:
            parts = list((lake / folder / day).glob("part-*.c000.snappy.parquet"))
            assert parts and all((p.parent / f".{p.name}.crc").is_file() for p in parts), (folder, day)
    assert not (lake / "_staging").exists()
    with duckdb.connect(str(spark.root / "warehouse.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT table_type FROM information_schema.tables WHERE table_name = "
                            "'daily_contact_activity'").fetchall() == [("VIEW",)]
        assert not conn.execute("SELECT * FROM information_schema.tables WHERE table_name = 'events'").fetchall()
    _assert_same_fact_and_quarantine(duck, spark, duck.raw_dir, spark.raw_dir)


def _assert_same_fact_and_quarantine(duck: Pipeline, spark: Pipeline, duck_raw: Path, spark_raw: Path) -> None:
    """The Spark run's daily fact is DuckDB's, and the activity's bad rows are filed in the
    warehouse's quarantine as on DuckDB (each row's file named under its own raw folder)."""
    fact = "SELECT * FROM core.daily_contact_activity ORDER BY activity_date, user_id"
    quarantine = ("SELECT * EXCLUDE (source_file, row_json), replace(source_file, $root, ''), "
                  "CAST(row_json AS VARCHAR) FROM raw.quarantine ORDER BY ALL")
    with duckdb.connect(str(duck.root / "warehouse.duckdb"), read_only=True) as a, \
            duckdb.connect(str(spark.root / "warehouse.duckdb"), read_only=True) as b:
        expected = a.execute(fact).df()
        assert len(expected) > 0
        pd.testing.assert_frame_equal(b.execute(fact).df()[list(expected.columns)], expected)
        expected = a.execute(quarantine, {"root": str(duck_raw)}).fetchall()
        assert any(partition_date for partition_date, *_ in expected)  # the sample has bad activity rows
        assert b.execute(quarantine, {"root": str(spark_raw)}).fetchall() == expected


def test_the_event_stage_reads_a_heap_delivery_landed_as_parquet_as_duckdb_does(server, tmp_path):
    """The Spark engine reads the raw source where it lands, as DuckDB does: here Heap's S3
    delivery (a local copy of the bucket), landed as day folders of parquet per event table
    (all_events/<table>/day=<day>/), with events delivered again, users updated by a later dump
    and a full resync of one table. The stages after the fact read it alike on both engines
    (test_the_sample_run_gives_identical_exports_on_each_engine), so the raw stage is compared."""
    generate_sample(tmp_path / "folder", SPEC)
    write_heap_delivery(tmp_path / "folder", tmp_path / "delivery")

    def delivery(root: Path):  # each run lands the delivery in its own folder
        return functools.partial(HeapS3Source, location=str(tmp_path / "delivery"), landing_dir=str(root / "landing"))

    duck = Pipeline(tmp_path / "duckdb", source=delivery(tmp_path / "duckdb"))
    spark = _spark_pipeline(tmp_path / "spark", server, source=delivery(tmp_path / "spark"))
    for pipeline in (duck, spark):
        pipeline.materialize(SPEC.start, SPEC.end, selection=RAW_ACTIVITY_ASSETS)
    assert {p.parent.parent.name for p in (tmp_path / "spark" / "landing" / "all_events").glob("*/day=*/*.parquet")} \
        >= {"run_query", "share_report"}
    _assert_same_fact_and_quarantine(duck, spark, tmp_path / "duckdb" / "landing", tmp_path / "spark" / "landing")
    published = {folder: sorted(p.name for p in (tmp_path / "spark" / "lake" / folder).glob("activity_date=*"))
                 for folder in FOLDERS.values()}
    assert published == dict.fromkeys(FOLDERS.values(), [f"activity_date={SPEC.start + dt.timedelta(days=n)}"
                                                          for n in range(SPEC.days)])


def test_a_failed_check_leaves_the_lake_as_it_was_and_a_day_that_became_empty_is_removed(server, tmp_path):
    spark = _spark_pipeline(tmp_path, server)
    generate_sample(spark.raw_dir, replace(SPEC, days=4))
    last = SPEC.start + dt.timedelta(days=3)
    spark.materialize(SPEC.start, last, selection=RAW_ACTIVITY_ASSETS)  # the lake is all it looks at
    published = _lake_files(spark)
    for table in ("sessions", "all_events"):  # the export loses its last day
        (spark.raw_dir / table / f"{last}.parquet").unlink()
    cls, message = spark.failure(last, last, selection=RAW_ACTIVITY_ASSETS)
    assert cls == "AuditFailed" and "activity_every_day" in message
    assert _lake_files(spark) == published
    assert not (tmp_path / "lake" / "_staging").exists()
    spark.known_gaps = [str(last)]  # declared: the day is now empty, and removed from the lake
    spark.materialize(last, last, selection=RAW_ACTIVITY_ASSETS)
    for folder in FOLDERS.values():
        days = sorted(p.name for p in (tmp_path / "lake" / folder).glob("activity_date=*"))
        assert days == [f"activity_date={SPEC.start + dt.timedelta(days=n)}" for n in range(3)], folder


# --- every portable statement, on the same inputs --------------------------------------------------

def _value(value):
    """A row's value as both engines' clients can be compared: a struct as the tuple of its values."""
    if isinstance(value, dict):
        return tuple(_value(v) for v in value.values())
    if isinstance(value, tuple):
        return tuple(_value(v) for v in value)
    return value


def _rows(engine, sql: str, params: dict | None = None) -> list:
    sql = sql if sql.lstrip().upper().startswith(("SELECT", "WITH", "--", "{")) else f"SELECT * FROM {sql}"
    return sorted((tuple(_value(v) for v in row) for row in engine.execute(sql, params).fetchall()), key=repr)


def _crafted(raw_dir: Path, day: dt.date) -> None:
    """Rows of every kind the classification tells apart, added to the sample's own on `day`."""
    at = pd.Timestamp(day) + pd.Timedelta(hours=12)
    sample = pd.read_parquet(raw_dir / "all_events" / f"{day}.parquet")
    user, session, event = sample.user_id.iloc[0], int(sample.session_id.iloc[0]), int(sample.event_id.iloc[0])
    events = pd.DataFrame({
        "event_id": pd.array([None, 9_000_001, 9_000_002, 9_000_003, 9_000_004, 9_000_005, 9_000_006, event],
                             dtype="Int64"),
        "user_id": ["u-x", None, user, "nobody-knows", user, user, user, user],
        "session_id": pd.array([session] * 8, dtype="Int64"),
        "time": [at, at, at, at, at, pd.NaT, pd.Timestamp("2100-01-01"), at + pd.Timedelta(seconds=1)],
        "event_table_name": ["run_query", "run_query", None, "run_query", "Run_Query", "run_query", "run_query",
                             sample.event_table_name.iloc[0]],
    }).astype({"time": "datetime64[ns]"})
    events.to_parquet(raw_dir / "all_events" / "crafted.parquet", index=False)
    sessions = pd.DataFrame({"session_id": pd.array([None, 8_000_001, session], dtype="Int64"),
                             "user_id": [user, "nobody-knows", user],
                             "time": [at, at, at + pd.Timedelta(seconds=5)]}).astype({"time": "datetime64[ns]"})
    sessions.to_parquet(raw_dir / "sessions" / "crafted.parquet", index=False)


def test_every_portable_statement_gives_the_same_rows_on_each_engine(server, tmp_path, monkeypatch):
    rendered = set()
    render = SqlFolder.render

    def recorded(self, name, **context):
        rendered.add((self.folder / f"{name}.sql").relative_to(PACKAGE_DIR).as_posix())
        return render(self, name, **context)

    monkeypatch.setattr(SqlFolder, "render", recorded)
    spec = replace(SPEC, days=6, accounts=6)
    generate_sample(tmp_path / "raw", spec)
    days = [spec.start + dt.timedelta(days=n) for n in range(spec.days)]
    _crafted(tmp_path / "raw", days[2])
    config = load_config()
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'UTC'")
    for schema in ("raw", "core"):
        duck.execute(f"CREATE SCHEMA {schema}")
    spark = connect(server.url)
    try:
        tables, _ = stage_inputs(duck, FolderSource(raw_dir=str(tmp_path / "raw")), config)
        spark.register_arrow("activity_attribution", duck.sql("SELECT * FROM activity_attribution").to_arrow_table())
        on_duck = activity_tables(tables)
        on_spark_ = tuple(replace(a, raw=on_spark.read_raw(spark, a.raw)) for a in on_duck)
        future = dt.datetime.combine(days[-1], dt.time()) + dt.timedelta(days=2)
        # The ledger: the days after the range [days[1], days[3]], as DuckDB stores them.
        outside = _bounds(days[4], days[5], future)
        for activity in on_duck:
            stage_classified(duck, activity, outside, stored=False)
            duck.execute(f"CREATE TABLE raw.{activity.name} AS SELECT * FROM {activity.name}_loaded")
        # Copies of six loading ids of the range stored on other days: three earlier (they win), three
        # later (they lose to the range's, which supersede them).
        inside = _bounds(days[1], days[3], future)
        for activity in on_duck:
            stage_classified(duck, activity, inside, stored=False)
            id_column = activity.id_column
            duck.execute(f"""
                INSERT INTO raw.{activity.name}
                SELECT CAST("time" + shift AS DATE), {id_column}, user_id, "time" + shift
                FROM (SELECT *, CASE WHEN row_number() OVER (ORDER BY {id_column}) <= 3 THEN INTERVAL (-2) DAY
                                     ELSE INTERVAL 3 DAY END AS shift
                      FROM {activity.name}_in_range
                      WHERE {id_column} IS NOT NULL
                        AND user_id IN (SELECT user_id FROM activity_attribution WHERE outcome = 'loaded')
                      ORDER BY {id_column} LIMIT 6)""")
            ledger = duck.sql(f"SELECT * FROM raw.{activity.name}").to_arrow_table()
            spark.register_arrow(f"raw_{activity.name}", ledger)
        # The range, statement by statement, on each engine.
        for engine, activities in ((duck, on_duck), (spark, on_spark_)):
            SQL.run(engine, "quarantine_rows")
            for activity in activities:
                stage_classified(engine, activity, inside, stored=True)
                SQL.run(engine, "quarantine_classified_rows", {"source_table": activity.raw.name},
                        classified=f"{activity.name}_suspect_classified", activity=activity)
                SQL.run(engine, "quarantine_undated_rows",
                        {**activity.raw.params, "source_table": activity.raw.name, "future_limit": future},
                        activity=activity)
        compared = 0
        for activity in on_duck:
            for staged in ("in_range", "kept_copies", "stored_elsewhere", "classified", "loaded", "suspect",
                           "suspect_classified"):
                assert _rows(spark, f"{activity.name}_{staged}") == _rows(duck, f"{activity.name}_{staged}"), staged
            superseded = SQL.render("superseded_days", activity=activity)
            assert _rows(spark, superseded, _range(inside)) == _rows(duck, superseded, _range(inside))
            assert _rows(duck, superseded, _range(inside)), "a copy on a later day is superseded"
            compared += 8
        assert _rows(spark, "quarantine_rows") == _rows(duck, "quarantine_rows")
        reasons = {reason for _, _, reason, *_ in _rows(duck, "quarantine_rows")}
        assert {"null_id", "null_user_id", "null_event_name", "unknown_user", "null_time", "future_time"} <= reasons
        # The fact reads the range's sessions from the ledger, as the swap leaves it.
        duck.execute("INSERT INTO raw.sessions SELECT * FROM sessions_loaded")
        spark.register("raw_sessions", spark.table("raw_sessions").unionByName(spark.table("sessions_loaded")))
        duck.execute("INSERT INTO raw.events SELECT * FROM events_loaded")
        spark.register("raw_events", spark.table("raw_events").unionByName(spark.table("events_loaded")))
        params = {**fact_params(config), **_range(inside)}
        for engine in (duck, spark):
            SQL.run(engine, "events_counted", params, config=config)
        assert _rows(spark, "events_counted") == _rows(duck, "events_counted")
        for sql, params in (
                (SQL.render("daily_contact_activity", config=config), _range(inside)),
                (SQL.render("event_names_in_another_case"), {"tracked_events": list(config.tracked_events)})):
            assert _rows(spark, sql, params) == _rows(duck, sql, params)
            compared += 1
        assert _rows(duck, SQL.render("event_names_in_another_case"),
                     {"tracked_events": list(config.tracked_events)})  # the crafted Run_Query
        checked = {"first_day": days[1], "last_day": days[3]}
        for table, id_column in (("raw.sessions", "session_id"), ("raw.events", "event_id")):
            for check in ("raw_ids_and_times", "raw_ids_unique", "raw_times_in_partition"):
                sql = CHECKS_SQL.render(check, table=table, id_column=id_column)
                assert _rows(spark, sql, checked) == _rows(duck, sql, checked), (table, check)
            assert day_figures(spark, table, "activity_date", days[0], days[5]) == \
                day_figures(duck, table, "activity_date", days[0], days[5])
        sql = CHECKS_SQL.render("activity_per_day")
        assert _rows(spark, sql, checked) == _rows(duck, sql, checked)
        assert compared
        assert set(on_spark.SPARK_TEMPLATES) <= rendered
    finally:
        spark.close()
        duck.close()
