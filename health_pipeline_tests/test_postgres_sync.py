"""postgres_sync against a real PostgreSQL server (postgres_server.py): the upsert, a rerun, an
overlapping range, a sync killed mid-load, a server that is down or refuses the password, and a
column the scorecard adds; the database's objects that are the user's too (grants, views built on
the sync's views, an older pipeline's view, a reader's open transaction); NUL in a text value; the
views of the latest row and of the current customers."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import psycopg
import pytest
import yaml

from health_pipeline.assets.postgres_sync.asset import SYNCED
from health_pipeline.resources import PostgresSyncBlocked
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.scorecard.parser import load_config
from health_pipeline.settings import DEFAULT_CONFIG_PATH
from health_pipeline_tests.conftest import Pipeline, run_records
from health_pipeline_tests.postgres_server import PASSWORD, free_port, require_binaries, start_server
from health_pipeline_tests.test_crash_safety import END, START, env_for, kill_at, run_cli

SPEC = SampleSpec(accounts=6, days=20, seed=5)
FIRST, LAST = dt.date.fromisoformat(START), dt.date.fromisoformat(END)
# The days of the warehouse that the tests of the database's objects sync again and again.
NEWEST = FIRST + dt.timedelta(days=2)
# account_health_latest as the pipeline created it before it kept the database's objects: dropped and
# created again by every sync, with no comment.
OLD_LATEST_VIEW = """
DROP VIEW IF EXISTS "health"."account_health_latest";
CREATE VIEW "health"."account_health_latest" AS
SELECT DISTINCT ON ("account_id") *
FROM "health"."account_health"
ORDER BY "account_id", "snapshot_date" DESC
"""

require_binaries()

_databases = itertools.count()


@pytest.fixture(scope="module")
def server():
    server = start_server()
    yield server
    server.stop()


@pytest.fixture
def database(server) -> str:
    """A fresh database on the server; its URL."""
    name = f"sync_{next(_databases)}"
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return server.url(database=name)


def sample_pipeline(root: Path, url: str, **kwargs) -> Pipeline:
    pipeline = Pipeline(root, postgres_url=url, **kwargs)
    generate_sample(pipeline.raw_dir, SPEC)
    return pipeline


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    """A warehouse whose exports hold the sample's days FIRST..NEWEST, for the tests that only sync."""
    root = tmp_path_factory.mktemp("scored")
    sample_pipeline(root, "").materialize(FIRST, NEWEST)
    return root / "warehouse.duckdb"


def sync_only(tmp_path: Path, scored: Path, url: str) -> Pipeline:
    """A pipeline on a copy of the `scored` warehouse, syncing to `url`; `sync` runs it."""
    shutil.copy(scored, tmp_path / "warehouse.duckdb")
    return Pipeline(tmp_path, postgres_url=url, instance=dg.DagsterInstance.ephemeral())


def sync(pipeline: Pipeline):
    return pipeline.run(FIRST, NEWEST, selection=["postgres_sync"])


def edit_export(pipeline: Pipeline, *statements: str) -> None:
    with duckdb.connect(str(pipeline.root / "warehouse.duckdb")) as conn:
        for statement in statements:
            conn.execute(statement)


def in_postgres(url: str, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def connector_role(url: str) -> str:
    """A role of this test's own (roles are the server's, not the database's) that may read the schema."""
    role = "connector_" + url.rsplit("/", 1)[1]
    in_postgres(url, f'CREATE ROLE "{role}"')
    in_postgres(url, f'GRANT USAGE ON SCHEMA health TO "{role}"')
    return role


def view_oid(url: str, view: str) -> int:
    return in_postgres(url, "SELECT %s::regclass::oid", (f"health.{view}",))[0][0]


def synced(url: str, table: str) -> pd.DataFrame:
    key = SYNCED[table]
    with psycopg.connect(url) as conn:
        cursor = conn.execute(f'SELECT * FROM health."{table}" ORDER BY snapshot_date, "{key}"')
        return pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])


def exported(pipeline: Pipeline, table: str) -> pd.DataFrame:
    key = SYNCED[table]
    with duckdb.connect(str(pipeline.root / "warehouse.duckdb"), read_only=True) as conn:
        cursor = conn.execute(f"SELECT * FROM export.{table} ORDER BY snapshot_date, {key}")
        return pd.DataFrame(cursor.fetchall(), columns=[c[0] for c in cursor.description])


def assert_synced_equals_export(pipeline: Pipeline, url: str):
    for table in SYNCED:
        pd.testing.assert_frame_equal(synced(url, table), exported(pipeline, table), check_dtype=False)


def sync_metadata(result) -> dict:
    return next(m.materialization.metadata for m in result.get_asset_materialization_events()
                if m.asset_key.to_user_string() == "postgres_sync")


@pytest.mark.slow
def test_upsert_rerun_and_an_overlapping_range(tmp_path, database):
    pipeline = sample_pipeline(tmp_path, database, instance=dg.DagsterInstance.ephemeral())
    first = pipeline.run(FIRST, FIRST + dt.timedelta(days=9))
    assert first.success, pipeline.failure_of(first)
    assert_synced_equals_export(pipeline, database)
    meta = sync_metadata(first)
    rows = len(exported(pipeline, "account_health"))
    assert meta["account_health_inserted"].value == meta["account_health_rows"].value == rows > 0
    assert meta["account_health_updated"].value == meta["account_health_deleted"].value == 0

    # A run of earlier days syncs the later days the exports hold too, and records them as theirs.
    rerun = pipeline.run(FIRST, FIRST + dt.timedelta(days=4), selection=["postgres_sync"])
    meta = sync_metadata(rerun)
    assert meta["account_health_rows"].value == rows
    for table in SYNCED:  # every row already there, unchanged: nothing written
        assert [meta[f"{table}_{what}"].value for what in ("inserted", "updated", "deleted")] == [0, 0, 0]
    assert_synced_equals_export(pipeline, database)
    days = [(FIRST + dt.timedelta(days=n)).isoformat() for n in range(10)]
    recorded = run_records(pipeline.instance, rerun.run_id, "postgres_sync")
    assert list(recorded) == days
    assert {day: (by := record.asset_materialization.metadata.get("refreshed_by_the_run_of")) and by.value
            for day, record in recorded.items()} == {day: None if day <= days[4] else days[4] for day in days}

    overlap = pipeline.run(FIRST + dt.timedelta(days=5), LAST)
    assert overlap.success, pipeline.failure_of(overlap)
    assert_synced_equals_export(pipeline, database)
    with psycopg.connect(database) as conn:
        latest = conn.execute("SELECT account_id, snapshot_date FROM health.account_health_latest "
                              "ORDER BY account_id").fetchall()
    newest = exported(pipeline, "account_health").groupby("account_id").snapshot_date.max()
    assert latest == list(newest.items())


@pytest.mark.slow
def test_rows_the_export_no_longer_has_are_deleted(tmp_path, database):
    pipeline = sample_pipeline(tmp_path, database)
    pipeline.materialize(FIRST, FIRST + dt.timedelta(days=4))
    with psycopg.connect(database) as conn:
        conn.execute("INSERT INTO health.account_health (account_id, snapshot_date) VALUES ('GONE', %s)",
                     (FIRST + dt.timedelta(days=2),))
    result = pipeline.run(FIRST, FIRST + dt.timedelta(days=4), selection=["postgres_sync"])
    assert sync_metadata(result)["account_health_deleted"].value == 1
    assert_synced_equals_export(pipeline, database)


@pytest.mark.slow
def test_a_sync_killed_mid_load_leaves_the_tables_as_they_were(tmp_path, database):
    root = tmp_path / "run"
    generate_sample(root / "raw", SPEC)
    env = env_for(root, HEALTH_SYNC_POSTGRES_URL=database)
    run_cli(root, env)
    before = {table: synced(database, table) for table in SYNCED}
    with psycopg.connect(database) as conn:  # something for the killed run to overwrite
        conn.execute("UPDATE health.account_health SET health_score = -1")
    changed = {table: synced(database, table) for table in SYNCED}

    kill_at(root, "pgcopy:2", env)  # account_health copied and upserted, contact_usage half-way
    for table in SYNCED:
        pd.testing.assert_frame_equal(synced(database, table), changed[table])
    run_cli(root, env)
    for table in SYNCED:  # as a clean run leaves it: the export, and the first run's values
        after = synced(database, table)
        pd.testing.assert_frame_equal(after, exported(Pipeline(root), table), check_dtype=False)
        pd.testing.assert_frame_equal(after.drop(columns="computed_at"), before[table].drop(columns="computed_at"))


@pytest.mark.parametrize("failure", ["down", "password"])
def test_a_server_that_is_down_or_refuses_fails_the_sync_alone(tmp_path, server, failure):
    url = server.url(port=free_port()) if failure == "down" else server.url(password="not-the-password")
    pipeline = sample_pipeline(tmp_path, url)
    result = pipeline.run(FIRST, FIRST + dt.timedelta(days=2))
    assert not result.success
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    assert failed == ["postgres_sync"]
    cls, message = pipeline.failure_of(result)
    assert cls == "PostgresUnavailable"
    assert message.startswith("cannot connect to PostgreSQL as health@127.0.0.1:")
    assert ("password authentication failed" in message) == (failure == "password")
    assert ("Connection refused" in message) == (failure == "down")
    assert PASSWORD not in message and "not-the-password" not in message
    # Everything local was written before the sync.
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert {"sync_export", "contact_usage", "band_changes", "morning_report"} <= materialized
    assert (pipeline.export_dir / "account_health" / f"snapshot_date={FIRST + dt.timedelta(days=2)}.csv").exists()


@pytest.mark.slow
def test_a_column_the_scorecard_adds_is_added_without_dropping_data(tmp_path, database):
    pipeline = sample_pipeline(tmp_path, database)
    pipeline.materialize(FIRST, FIRST + dt.timedelta(days=4))
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["events"]["features"] = [*raw["events"]["features"], "view_dashboard"]
    (tmp_path / "wider.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    pipeline.settings = load_config(tmp_path / "wider.yaml")
    pipeline.materialize(FIRST + dt.timedelta(days=3), FIRST + dt.timedelta(days=4))
    table = synced(database, "account_health")
    assert "view_dashboard_users_28d" in table.columns
    earlier = table[table.snapshot_date < FIRST + dt.timedelta(days=3)]
    later = table[table.snapshot_date >= FIRST + dt.timedelta(days=3)]
    assert len(earlier) and earlier.view_dashboard_users_28d.isna().all()  # kept, with the new column empty
    assert later.view_dashboard_users_28d.notna().all()


def test_without_a_url_the_sync_skips_visibly(tmp_path):
    pipeline = sample_pipeline(tmp_path, "")
    result = pipeline.run(FIRST, FIRST + dt.timedelta(days=1))
    assert result.success
    meta = sync_metadata(result)
    assert meta["skipped"].value == "HEALTH_SYNC_POSTGRES_URL is not set: nothing was synced"
    assert meta["dagster/row_count"].value == 0


@pytest.mark.slow
def test_grants_on_the_views_survive_syncs_and_a_new_column(tmp_path, scored, database):
    pipeline = sync_only(tmp_path, scored, database)
    assert sync(pipeline).success
    role = connector_role(database)
    views = ("account_health_latest", "account_health_current")
    in_postgres(database, f'GRANT SELECT ON health.account_health_latest, health.account_health_current TO "{role}"')
    oids = {view: view_oid(database, view) for view in views}

    assert sync(pipeline).success
    edit_export(pipeline, "ALTER TABLE export.account_health ADD COLUMN renewal_risk BOOLEAN",
                "UPDATE export.account_health SET renewal_risk = true")
    assert sync(pipeline).success  # the views gain the column: replaced in place, not dropped
    for view in views:
        assert in_postgres(database, "SELECT has_table_privilege(%s, %s, 'SELECT')", (role, f"health.{view}")) \
            == [(True,)]
        assert view_oid(database, view) == oids[view]
        columns = [name for (name,) in in_postgres(
            database, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'health' "
                      "AND table_name = %s ORDER BY ordinal_position", (view,))]
        assert columns[-1] == "renewal_risk"


@pytest.mark.slow
def test_a_users_view_on_the_latest_view_survives_syncs(tmp_path, scored, database):
    pipeline = sync_only(tmp_path, scored, database)
    assert sync(pipeline).success
    in_postgres(database, "CREATE VIEW public.red_accounts AS SELECT account_id, health_score "
                          "FROM health.account_health_latest WHERE health_band = 'red'")
    expected = in_postgres(database, "SELECT * FROM public.red_accounts ORDER BY account_id")

    first = sync(pipeline)
    assert first.success, pipeline.failure_of(first)
    edit_export(pipeline, "ALTER TABLE export.account_health ADD COLUMN renewal_risk BOOLEAN")
    wider = sync(pipeline)
    assert wider.success, pipeline.failure_of(wider)
    assert in_postgres(database, "SELECT * FROM public.red_accounts ORDER BY account_id") == expected


@pytest.mark.slow
def test_a_readers_open_transaction_blocks_only_a_sync_that_adds_a_column_and_is_named(
        tmp_path, scored, database, monkeypatch):
    # A sync that sets no lock timeout of its own would wait for the reader for ever: this bounds it.
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=30s")
    pipeline = sync_only(tmp_path, scored, database)
    assert sync(pipeline).success
    computed_at = in_postgres(database, "SELECT max(computed_at) FROM health.account_health")
    with psycopg.connect(database, application_name="bi-connector") as reader:
        reader_pid = reader.info.backend_pid
        for relation in ("account_health", "account_health_latest"):
            assert reader.execute(f"SELECT count(*) FROM health.{relation}").fetchone()[0] > 0
        # The reader's transaction stays open, holding its locks on the table and the view.

        unchanged = sync(pipeline)
        assert unchanged.success, pipeline.failure_of(unchanged)

        edit_export(pipeline, "ALTER TABLE export.account_health ADD COLUMN renewal_risk BOOLEAN",
                    "UPDATE export.account_health SET computed_at = TIMESTAMP '2030-01-01 00:00:00'")
        pipeline.postgres_lock_timeout_seconds = 1
        blocked = sync(pipeline)
        assert not blocked.success
        cls, message = pipeline.failure_of(blocked)
        assert cls == PostgresSyncBlocked.__name__
        assert message.startswith("health.account_health: the sync waited 1 s for a lock on it and gave up; "
                                  "nothing was synced. Held by session pid ")
        assert f"session pid {reader_pid} (user health, application 'bi-connector', idle in transaction since " \
            in message
        assert message.endswith(f"or SELECT pg_terminate_backend(pid) for pid {reader_pid}) and run the sync again")
        assert "\n" not in message
        # Rolled back: no column, no row changed.
        assert in_postgres(database, "SELECT count(*) FROM information_schema.columns "
                                     "WHERE table_name = 'account_health' AND column_name = 'renewal_risk'") == [(0,)]
        assert in_postgres(database, "SELECT max(computed_at) FROM health.account_health") == computed_at

    again = sync(pipeline)  # the reader has ended: the sync goes through
    assert again.success, pipeline.failure_of(again)
    assert in_postgres(database, "SELECT DISTINCT computed_at FROM health.account_health") \
        == [(dt.datetime(2030, 1, 1),)]


@pytest.mark.slow
def test_a_nul_in_a_text_value_is_removed_reported_and_the_rest_syncs(tmp_path, scored, database):
    pipeline = sync_only(tmp_path, scored, database)
    account = exported(pipeline, "account_health").query("snapshot_date == @NEWEST").account_id.min()
    user = exported(pipeline, "contact_usage").query("snapshot_date == @FIRST").user_id.min()
    edit_export(
        pipeline,
        f"UPDATE export.account_health SET account_name = 'Acme' || chr(0) || ' Corp', owner = chr(0) "
        f"WHERE account_id = '{account}' AND snapshot_date = '{NEWEST}'",
        f"UPDATE export.contact_usage SET identity = 'ann' || chr(0) || '@acme.test' "
        f"WHERE user_id = '{user}' AND snapshot_date = '{FIRST}'")
    result = sync(pipeline)
    assert result.success, pipeline.failure_of(result)

    meta = sync_metadata(result)
    assert [meta[f"{table}_nul_removed"].value for table in SYNCED] == [2, 1, 0]
    warnings = [entry.user_message for entry in pipeline.instance.all_logs(result.run_id)
                if entry.level == logging.WARNING and "NUL" in entry.user_message]
    assert warnings == [
        "health.account_health: 2 text values held NUL characters, which PostgreSQL cannot store, and were "
        f"synced without them: account_name of account_id '{account}' on {NEWEST}; "
        f"owner of account_id '{account}' on {NEWEST}",
        "health.contact_usage: 1 text value held NUL characters, which PostgreSQL cannot store, and was "
        f"synced without them: identity of user_id '{user}' on {FIRST}",
    ]
    edit_export(pipeline,
                "UPDATE export.account_health SET account_name = 'Acme Corp', owner = '' "
                f"WHERE account_id = '{account}' AND snapshot_date = '{NEWEST}'",
                f"UPDATE export.contact_usage SET identity = 'ann@acme.test' "
                f"WHERE user_id = '{user}' AND snapshot_date = '{FIRST}'")
    assert_synced_equals_export(pipeline, database)  # every other value as exported


@pytest.mark.slow
def test_the_current_view_leaves_out_an_account_no_longer_scored_that_the_latest_view_keeps(
        tmp_path, scored, database):
    pipeline = sync_only(tmp_path, scored, database)
    newest = exported(pipeline, "account_health").query("snapshot_date == @NEWEST")
    churned = newest.account_id.min()
    edit_export(pipeline, f"DELETE FROM export.account_health WHERE account_id = '{churned}' "
                          f"AND snapshot_date = '{NEWEST}'")  # not scored on the newest day
    assert sync(pipeline).success

    current = in_postgres(database, "SELECT account_id, snapshot_date FROM health.account_health_current "
                                    "ORDER BY account_id")
    latest = dict(in_postgres(database, "SELECT account_id, snapshot_date FROM health.account_health_latest"))
    others = sorted(set(newest.account_id) - {churned})
    assert len(others) >= 2
    assert current == [(account, NEWEST) for account in others]
    assert latest == {churned: NEWEST - dt.timedelta(days=1), **{account: NEWEST for account in others}}
    (description,), = in_postgres(database, "SELECT obj_description('health.account_health_latest'::regclass)")
    assert "churned" in description and "account_health_current" in description


@pytest.mark.slow
def test_the_first_sync_over_an_older_pipelines_database_adopts_its_view(tmp_path, scored, database):
    pipeline = sync_only(tmp_path, scored, database)
    assert sync(pipeline).success
    # The database as the older pipeline left it: its view, no comment, no current view; then a
    # grant and a view of the user's on it, which the older pipeline's next sync would have failed on.
    in_postgres(database, "DROP VIEW IF EXISTS health.account_health_current")
    in_postgres(database, OLD_LATEST_VIEW)
    role = connector_role(database)
    in_postgres(database, f'GRANT SELECT ON health.account_health_latest TO "{role}"')
    in_postgres(database, "CREATE VIEW public.owners AS SELECT DISTINCT owner FROM health.account_health_latest")
    oid = view_oid(database, "account_health_latest")

    result = sync(pipeline)
    assert result.success, pipeline.failure_of(result)
    assert view_oid(database, "account_health_latest") == oid
    assert in_postgres(database, "SELECT has_table_privilege(%s, 'health.account_health_latest', 'SELECT')",
                       (role,)) == [(True,)]
    assert in_postgres(database, "SELECT count(*) FROM public.owners")[0][0] > 0
    assert in_postgres(database, "SELECT obj_description('health.account_health_latest'::regclass) IS NOT NULL, "
                                 "to_regclass('health.account_health_current') IS NOT NULL") == [(True, True)]


@pytest.mark.slow
def test_a_view_that_cannot_be_replaced_in_place_fails_the_sync_naming_it_and_keeps_the_users_views(
        tmp_path, scored, database):
    pipeline = sync_only(tmp_path, scored, database)
    assert sync(pipeline).success
    # A view of that name with other columns: the pipeline's definition cannot replace it in place.
    in_postgres(database, "DROP VIEW health.account_health_latest")
    in_postgres(database, "CREATE VIEW health.account_health_latest AS "
                          "SELECT account_id, health_score AS score FROM health.account_health")
    in_postgres(database, "CREATE VIEW public.scores AS SELECT score FROM health.account_health_latest")
    in_postgres(database, "UPDATE health.account_health SET health_score = -1")

    cls, message = pipeline.failure_of(sync(pipeline))
    assert cls == PostgresSyncBlocked.__name__
    assert message.startswith("health.account_health_latest: this version of the pipeline defines the view "
                              "differently and PostgreSQL cannot replace it in place (cannot change name of view "
                              'column "score" to "crm_account_id"); nothing was synced.')
    assert 'DROP VIEW "health"."account_health_latest"' in message and "\n" not in message
    assert in_postgres(database, "SELECT DISTINCT score FROM public.scores") == [(-1,)]  # kept, and rolled back
