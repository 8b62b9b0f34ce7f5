"""The warehouse source (health_pipeline.sources.warehouse) against a real PostgreSQL server
(postgres_server.py) holding the sample as Heap Connect's warehouse tables: raw_activity reads
it exactly as it reads the same sample as a folder; later runs extract only the days the
warehouse changed; a bad URL or password is one line that never shows the password; and every
query is written for PostgreSQL, Snowflake and BigQuery."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc_postgres
import duckdb
import pandas as pd
import pytest
import sqlglot

from health_pipeline import cli
from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.raw_input import RawInputError
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.sources import WarehouseSource
from health_pipeline.sources.landing import Landing
from health_pipeline.sources.warehouse import DIALECTS, HeapTable, render
from health_pipeline_tests.conftest import Pipeline
from health_pipeline_tests.postgres_server import PASSWORD, binaries, start_server

SPEC = SampleSpec(accounts=10, days=35, seed=3)
FIRST, LAST = SPEC.start, SPEC.end
SCHEMA = "heap"
# The sample's files, and the warehouse table each is loaded into.
TABLES = {"users": "users.parquet", "accounts": "accounts.parquet", "user_migrations": "user_migrations.parquet",
          "outcomes": "outcomes.parquet", "sessions": "sessions/*.parquet", "all_events": "all_events/*.parquet"}
# The raw tables raw_activity writes, each as `SELECT *` (minus the columns that say where a row was read).
COMPARED = {
    "core.daily_contact_activity": "*", "raw.events": "*", "raw.sessions": "*", "raw.contacts": "*",
    "raw.accounts": "*", "raw.identity_map": "*", "raw.outcomes": "*", "raw.account_history": "*",
    "raw.contact_history": "*", "raw.quarantine": "* EXCLUDE (source_file)",
}

needs_postgres = pytest.mark.skipif(binaries() is None and not os.environ.get("HEALTH_REQUIRE_POSTGRES"),
                                    reason="PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
_databases = itertools.count()


@pytest.fixture(scope="module")
def server():
    server = start_server()
    if server is None:
        raise RuntimeError("HEALTH_REQUIRE_POSTGRES is set but PostgreSQL is not installed")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """The sample, with what the generator leaves out: CRM outcomes (one unusable) and an event
    without a time, so both reach the warehouse and the quarantine."""
    raw = tmp_path_factory.mktemp("sample") / "raw"
    generate_sample(raw, SPEC)
    with duckdb.connect() as conn:
        conn.execute(f"""
            COPY (SELECT * FROM read_parquet('{raw}/outcomes.parquet')
                  UNION ALL BY NAME
                  SELECT * FROM (VALUES ('A00001', DATE '2026-06-20', 'renewed', 1000.0, 1200.0, 'grew'),
                                        ('A00002', DATE '2026-06-21', 'paused', NULL, NULL, NULL))
                                 t(account_id, outcome_date, outcome, arr_before, arr_after, reason))
            TO '{raw}/outcomes.parquet' (FORMAT parquet)""")
        conn.execute(f"""
            COPY (SELECT * REPLACE (event_id + 900000000 AS event_id, CAST(NULL AS TIMESTAMP_NS) AS time)
                  FROM read_parquet('{raw}/all_events/{FIRST}.parquet') LIMIT 1)
            TO '{raw}/all_events/undated.parquet' (FORMAT parquet)""")
    return raw


@pytest.fixture
def url(server, monkeypatch) -> str:
    """A fresh database on the server, with an empty Heap schema; its URL, also as HEALTH_SOURCE_URL
    (the secret setting's value, which redaction masks wherever it appears)."""
    name = f"heap_{next(_databases)}"
    with adbc_postgres.connect(server.url(), autocommit=True) as admin, admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    url = server.url(database=name)
    execute(url, f"CREATE SCHEMA {SCHEMA}")
    monkeypatch.setenv("HEALTH_SOURCE_URL", url)
    return url


def execute(url: str, *statements: str) -> None:
    with adbc_postgres.connect(url) as conn, conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
        conn.commit()


def query(url: str, sql: str) -> list[tuple]:
    with adbc_postgres.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def load_heap_tables(url: str, raw: Path, tables=TABLES) -> None:
    """The sample's tables as Heap Connect's warehouse tables (times to the microsecond, as
    PostgreSQL stores them: the sample's are whole milliseconds)."""
    with duckdb.connect() as local, adbc_postgres.connect(url) as conn, conn.cursor() as cursor:
        for name, files in tables.items():
            rows = local.sql(f"SELECT * FROM read_parquet('{raw / files}', union_by_name = true)")
            times = [c for c, t in zip(rows.columns, rows.types) if str(t) == "TIMESTAMP_NS"]
            if times:
                rows = rows.select(", ".join(f'CAST("{c}" AS TIMESTAMP) AS "{c}"' if c in times else f'"{c}"'
                                             for c in rows.columns))
            cursor.adbc_ingest(name, rows.to_arrow_table(), mode="create", db_schema_name=SCHEMA)
        conn.commit()


def local(sql: str) -> tuple:
    """The one row a DuckDB query over local files returns."""
    with duckdb.connect() as conn:
        return conn.execute(sql).fetchone()


def warehouse_source(url: str, landing: Path, **options):
    """A factory for Pipeline.source: the warehouse source over `url`, landing under `landing`."""
    return lambda **shared: WarehouseSource(url=url, schema_name=SCHEMA, landing_dir=str(landing),
                                            **options, **shared)


def raw_tables(pipeline: Pipeline) -> dict[str, pd.DataFrame]:
    return {table: pipeline.query(f"SELECT {columns} FROM {table} ORDER BY ALL")
            for table, columns in COMPARED.items()}


@needs_postgres
@pytest.mark.slow
def test_raw_activity_reads_the_warehouse_as_it_reads_the_same_sample_as_a_folder(tmp_path, sample, url):
    load_heap_tables(url, sample)
    folder = Pipeline(tmp_path / "folder")
    shutil.copytree(sample, folder.raw_dir)
    warehouse = Pipeline(tmp_path / "warehouse", source=warehouse_source(url, tmp_path / "landing"))

    folder.materialize(FIRST, LAST, selection=RAW_ACTIVITY_ASSETS)
    result = warehouse.materialize(FIRST, LAST, selection=RAW_ACTIVITY_ASSETS)

    expected, got = raw_tables(folder), raw_tables(warehouse)
    for table in COMPARED:
        pd.testing.assert_frame_equal(got[table], expected[table], obj=table)
    # Not vacuous: the sample reaches every table, the quarantine included.
    assert all(len(expected[table]) for table in COMPARED)
    reasons = set(expected["raw.quarantine"]["reason"])
    assert {"null_time", "unknown_outcome"} <= reasons
    metadata = Pipeline.raw_activity_metadata(result)
    assert metadata["source.source"] == "warehouse"
    assert metadata["source.all_events.days_extracted"] == f"{FIRST} .. {LAST}, undated"
    (events,) = local(f"SELECT count(*) FROM read_parquet('{sample}/all_events/*.parquet')")
    assert metadata["source.all_events.rows"] == events
    assert metadata["source.outcomes.rows"] == 2
    assert PASSWORD not in str(metadata)


@needs_postgres
def test_a_later_run_extracts_only_the_days_the_warehouse_added_or_changed(tmp_path, sample, url):
    load_heap_tables(url, sample)
    source = WarehouseSource(url=url, schema_name=SCHEMA, landing_dir=str(tmp_path / "landing"))
    source.prepare()
    source.forget_stale_days(FIRST, LAST)  # a run extracted them all
    landing = Landing(tmp_path / "landing")
    untouched = landing.root / "sessions" / f"day={FIRST}"
    before = {p: p.stat().st_mtime_ns for p in untouched.iterdir()}

    # Heap's next sync: one more day of events, a day whose events were re-attributed (as many
    # rows as before), and a day of sessions that lost one.
    new_day, changed_day, shrunk_day = LAST + dt.timedelta(days=1), FIRST + dt.timedelta(days=9), \
        FIRST + dt.timedelta(days=20)
    events, sessions = f"{SCHEMA}.all_events", f"{SCHEMA}.sessions"

    def on(day: dt.date) -> str:
        return f"time >= '{day}' AND time < '{day + dt.timedelta(days=1)}'"

    execute(url,
            f"INSERT INTO {events} SELECT event_id + 800000000, user_id, session_id, time + interval '1 day', "
            f"event_table_name FROM {events} WHERE {on(LAST)}",
            f"UPDATE {events} SET user_id = '1000001' WHERE event_id = "
            f"(SELECT min(event_id) FROM {events} WHERE {on(changed_day)} AND user_id <> '1000001')",
            f"DELETE FROM {sessions} WHERE session_id = "
            f"(SELECT min(session_id) FROM {sessions} WHERE {on(shrunk_day)})")
    (added,) = query(url, f"SELECT count(*) FROM {events} WHERE {on(new_day)}")[0]
    changed, reattributed = query(url, f"SELECT count(*), count(*) FILTER (WHERE user_id = '1000001') "
                                       f"FROM {events} WHERE {on(changed_day)}")[0]
    (shrunk,) = query(url, f"SELECT count(*) FROM {sessions} WHERE {on(shrunk_day)}")[0]

    read = source.prepare()

    assert read["all_events.days_extracted"] == f"{changed_day}, {new_day}"
    assert read["all_events.rows"] == changed + added
    assert read["sessions.days_extracted"] == str(shrunk_day)
    assert read["sessions.rows"] == shrunk
    assert source.stale_days() == [changed_day, shrunk_day, new_day]
    # The landed days are the warehouse's: the changed row replaced, the deleted one gone.
    assert local(f"SELECT count(*) FROM read_parquet('{landing.root}/sessions/day={shrunk_day}/*.parquet')") \
        == (shrunk,)
    assert local(f"SELECT count(*), count(*) FILTER (WHERE user_id = '1000001') FROM "
                 f"read_parquet('{landing.root}/all_events/day={changed_day}/*.parquet')") == (changed, reattributed)
    assert {p: p.stat().st_mtime_ns for p in untouched.iterdir()} == before
    # Nothing more changed: the next run extracts nothing.
    again = source.prepare()
    assert again["all_events.days_extracted"] == again["sessions.days_extracted"] == \
        "none: every day is landed and unchanged"


@needs_postgres
def test_the_crm_tables_can_come_from_a_crm_folder(tmp_path, sample, url):
    load_heap_tables(url, sample, {name: f for name, f in TABLES.items() if name not in ("accounts", "outcomes")})
    source = WarehouseSource(url=url, schema_name=SCHEMA, landing_dir=str(tmp_path / "landing"), crm_dir=str(sample))
    read = source.prepare()
    assert "accounts.rows" not in read and "outcomes.rows" not in read
    with duckdb.connect() as conn:
        assert source.table(conn, "accounts").path == str(sample / "accounts.parquet")
        assert source.table(conn, "users").path == str(tmp_path / "landing" / "users.parquet")
    without_crm = WarehouseSource(url=url, schema_name=SCHEMA, landing_dir=str(tmp_path / "other"))
    with pytest.raises(RawInputError, match=rf"warehouse table {SCHEMA}.accounts not found"):
        without_crm.prepare()


@needs_postgres
def test_a_wrong_password_is_one_line_that_names_the_setting_and_not_the_password(tmp_path, server, url, capsys,
                                                                                  monkeypatch):
    wrong = server.url(password="Wr0ng-Passw0rd-Given", database=url.rsplit("/", 1)[1])
    monkeypatch.setenv("HEALTH_SOURCE_URL", wrong)
    source = WarehouseSource(url=wrong, schema_name=SCHEMA, landing_dir=str(tmp_path / "landing"))
    with pytest.raises(RawInputError) as failure:
        source.prepare()
    message = str(failure.value)
    assert message.startswith("HEALTH_SOURCE_URL: cannot connect to the postgres warehouse: ")
    assert "password authentication failed" in message and "\n" not in message
    assert "Wr0ng-Passw0rd-Given" not in message and failure.value.__cause__ is None
    assert failure.value.__suppress_context__

    # The same through raw_activity in Dagster, and through the CLI.
    pipeline = Pipeline(tmp_path / "run", source=warehouse_source(wrong, tmp_path / "landing"))
    result = pipeline.run(FIRST, FIRST, selection=RAW_ACTIVITY_ASSETS)
    assert not result.success
    assert pipeline.failure_of(result) == ("RawInputError", message)
    assert "Wr0ng-Passw0rd-Given" not in "".join(str(event) for event in result.all_events)
    env = {"HEALTH_SOURCE": "warehouse", "HEALTH_LANDING_DIR": str(tmp_path / "landing"),
           "HEALTH_WAREHOUSE": str(tmp_path / "cli.duckdb"), "DAGSTER_HOME": str(tmp_path / "home")}
    assert run_cli(env, capsys, monkeypatch) == (2, message)


def test_a_bad_url_is_refused_at_startup_in_one_line_that_does_not_quote_it(tmp_path, monkeypatch, capsys):
    env = {"HEALTH_SOURCE": "warehouse", "HEALTH_LANDING_DIR": str(tmp_path / "landing"),
           "HEALTH_SOURCE_URL": "postgresql://health:Sec@ret-Pass@127.0.0.1:5432/heap"}
    code, message = run_cli(env, capsys, monkeypatch)
    assert code == 2
    assert message == ("HEALTH_SOURCE=warehouse reads Heap's tables from HEALTH_SOURCE_URL, which is not usable: "
                       "its user or password holds an unescaped '@': percent-encode it as %40 (and ':' as %3A, "
                       "'/' as %2F)")
    env["HEALTH_SOURCE_URL"] = "mysql://health:SecretPass@127.0.0.1/heap"
    code, message = run_cli(env, capsys, monkeypatch)
    assert code == 2 and message.endswith("its scheme is not postgresql:// or postgres:// or redshift:// or "
                                          "snowflake:// or bigquery://")
    assert "SecretPass" not in message


def run_cli(env: dict, capsys, monkeypatch) -> tuple[int, str]:
    """`health-pipeline run` in this process with `env`: its exit code and what it printed to stderr."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()  # what was printed before
    code = cli.main(["run", "--start", str(FIRST), "--end", str(FIRST)])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("dialect", ["postgres", "snowflake", "bigquery"])
def test_every_query_is_written_for_each_warehouse_and_parses_back_in_its_dialect(dialect):
    written = {"postgres": DIALECTS["postgresql"], "snowflake": DIALECTS["snowflake"],
               "bigquery": DIALECTS["bigquery"]}[dialect]
    # Spelled as Snowflake spells unquoted names, so the quoting must keep the case.
    events = HeapTable("all_events", "HEAP", "ALL_EVENTS",
                       {c: c.upper() for c in ("event_id", "user_id", "session_id", "time", "event_table_name")},
                       time_zoned=False)
    start, end = dt.datetime(2026, 6, 1), dt.datetime(2026, 6, 3)
    rendered = {
        "digests": render("warehouse_day_digests", written, schema="HEAP", table="ALL_EVENTS", columns=events.columns),
        "days": render("warehouse_rows", written, {"start": start, "end": end}, schema="HEAP", table="ALL_EVENTS",
                       columns=events.columns, part="days"),
        "undated": render("warehouse_rows", written, schema="HEAP", table="ALL_EVENTS", columns=events.columns,
                          part="undated"),
        "whole": render("warehouse_rows", written, schema="HEAP", table="USERS", columns={"user_id": "USER_ID"},
                        part="whole"),
    }
    quote = "`" if dialect == "bigquery" else '"'
    for part, (sql, values) in rendered.items():
        sqlglot.parse_one(sql, read=dialect)  # raises on what the dialect cannot read
        table = "USERS" if part == "whole" else "ALL_EVENTS"
        assert f"FROM {quote}HEAP{quote}.{quote}{table}{quote}" in sql, part
        assert values == ([start, end] if part == "days" else []), part
    days_sql = rendered["days"][0]
    markers = ("$1", "$2") if dialect == "postgres" else ("?", "?")
    assert days_sql.endswith(f"WHERE {quote}TIME{quote} >= {markers[0]} AND {quote}TIME{quote} < {markers[1]}")
    assert f"{quote}EVENT_TABLE_NAME{quote} AS {quote}event_table_name{quote}" in days_sql
    assert "md5" in rendered["digests"][0].lower() and "GROUP BY" in rendered["digests"][0]


@needs_postgres
def test_a_landing_folder_of_another_kind_of_source_is_refused(tmp_path, url):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "_landing.json").write_text('{"source": "heap_s3", "tables": {}, "stale_days": []}')
    source = WarehouseSource(url=url, schema_name=SCHEMA, landing_dir=str(landing))
    with pytest.raises(RawInputError) as refused:
        source.prepare()
    assert str(refused.value) == (f"the landing folder {landing} holds what a heap_s3 source landed, not a warehouse "
                                  "source: give each source its own HEALTH_LANDING_DIR")
    assert sorted(p.name for p in landing.iterdir()) == ["_landing.json"]
