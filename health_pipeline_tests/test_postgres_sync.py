"""postgres_sync against a real PostgreSQL server (postgres_server.py): the upsert, a rerun, an
overlapping range, a sync killed mid-load, a server that is down or refuses the password, and a
column the scorecard adds."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pytest
import yaml

from health_pipeline.assets.postgres_sync.asset import SYNCED
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.scorecard.parser import load_config
from health_pipeline.settings import DEFAULT_CONFIG_PATH
from health_pipeline_tests.conftest import Pipeline
from health_pipeline_tests.postgres_server import PASSWORD, free_port, require_binaries, start_server
from health_pipeline_tests.test_crash_safety import END, START, env_for, kill_at, run_cli

SPEC = SampleSpec(accounts=6, days=20, seed=5)
FIRST, LAST = dt.date.fromisoformat(START), dt.date.fromisoformat(END)

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
    pipeline = sample_pipeline(tmp_path, database)
    first = pipeline.run(FIRST, FIRST + dt.timedelta(days=9))
    assert first.success, pipeline.failure_of(first)
    assert_synced_equals_export(pipeline, database)
    meta = sync_metadata(first)
    rows = len(exported(pipeline, "account_health"))
    assert meta["account_health_inserted"].value == meta["account_health_rows"].value == rows > 0
    assert meta["account_health_updated"].value == meta["account_health_deleted"].value == 0

    rerun = pipeline.run(FIRST, FIRST + dt.timedelta(days=9), selection=["postgres_sync"])
    meta = sync_metadata(rerun)
    assert meta["account_health_rows"].value == rows
    for table in SYNCED:  # every row already there, unchanged: nothing written
        assert [meta[f"{table}_{what}"].value for what in ("inserted", "updated", "deleted")] == [0, 0, 0]
    assert_synced_equals_export(pipeline, database)

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
