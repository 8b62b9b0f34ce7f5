"""How the pipeline is operated: the repo's Dagster instance, the concurrency pool, the daily schedule."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from health_pipeline import DATA_DIR
from health_pipeline.definitions import build_defs, defs
from health_pipeline.resources import Warehouse
from health_pipeline.schedules import DAILY_SCHEDULE, EXPORT_FRESHNESS, refresh_range
from health_pipeline.settings import late_days
from health_pipeline.sources import FolderSource

DAGSTER_YAML = DATA_DIR / "dagster_home" / "dagster.yaml"


@pytest.fixture
def repo_instance(tmp_path, monkeypatch):
    """An instance configured by the repo's dagster.yaml, in a scratch DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML.read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_repo_instance_keeps_run_history_across_restarts(repo_instance, tmp_path):
    @dg.asset
    def probe() -> None: ...

    result = dg.materialize([probe], instance=repo_instance)
    repo_instance.dispose()
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as restarted:
        assert [r.run_id for r in restarted.get_runs()] == [result.run_id]
    assert (tmp_path / "dagster_home" / "history" / "runs.db").is_file()


def test_repo_instance_limits_the_warehouse_pool_to_one(repo_instance):
    pools = repo_instance.event_log_storage.get_pool_config()
    assert (pools.pool_granularity.value, pools.default_pool_limit) == ("op", 1)
    # Queued runs whose first step would wait for the pool stay in the queue.
    assert repo_instance.run_coordinator.get_run_queue_config().should_block_op_concurrency_limited_runs


def test_every_step_that_opens_the_warehouse_is_in_its_pool():
    job = defs.resolve_job_def("health_job")
    pools = {node.name: node.definition.pool for node in job.graph.nodes}
    assert pools and set(pools.values()) == {Warehouse.POOL}, pools


START = dt.date(2026, 6, 1)  # the first partition (HEALTH_PARTITIONS_START default)


def _tick(schedule: dg.ScheduleDefinition, at: dt.datetime, raw_source=None):
    """A tick at `at`; the schedule asks the raw source which days changed since they were extracted."""
    source = raw_source or FolderSource(raw_dir=str(DATA_DIR / "raw"))
    with dg.build_schedule_context(scheduled_execution_time=at, resources={"raw_source": source}) as context:
        return schedule.evaluate_tick(context)


def test_daily_schedule_runs_the_whole_chain_at_two_utc_and_is_on_by_default():
    schedule = defs.resolve_schedule_def(DAILY_SCHEDULE)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "UTC")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "health_job"


def test_a_tick_refreshes_yesterday_and_the_two_days_before_it_in_one_run():
    schedule = defs.resolve_schedule_def(DAILY_SCHEDULE)
    result = _tick(schedule, dt.datetime(2026, 7, 15, 2, 0, tzinfo=dt.UTC))
    [request] = result.run_requests
    assert request.run_key == "2026-07-14"
    assert request.tags["dagster/asset_partition_range_start"] == "2026-07-12"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-07-14"


def test_a_tick_before_the_first_partition_is_skipped():
    schedule = defs.resolve_schedule_def(DAILY_SCHEDULE)
    result = _tick(schedule, dt.datetime(2026, 6, 1, 2, 0, tzinfo=dt.UTC))
    assert result.run_requests == [] and "2026-06-01" in result.skip_message


def test_health_late_days_is_read_when_the_definitions_load(monkeypatch):
    monkeypatch.setenv("HEALTH_LATE_DAYS", "5")
    schedule = build_defs().resolve_schedule_def(DAILY_SCHEDULE)
    [request] = _tick(schedule, dt.datetime(2026, 7, 15, 2, 0, tzinfo=dt.UTC)).run_requests
    assert request.tags["dagster/asset_partition_range_start"] == "2026-07-09"
    assert "the 5 days before it" in schedule.description


@pytest.mark.parametrize("value", ["-1", "two", "1.5", " "])
def test_a_bad_health_late_days_fails_with_its_value(monkeypatch, value):
    monkeypatch.setenv("HEALTH_LATE_DAYS", value)
    with pytest.raises(ValueError, match=f"HEALTH_LATE_DAYS={value!r} is not a whole number"):
        late_days()


@pytest.mark.parametrize(
    ("tick_day", "late", "expected"),
    [
        (dt.date(2026, 7, 15), 2, (dt.date(2026, 7, 12), dt.date(2026, 7, 14))),
        (dt.date(2026, 7, 15), 0, (dt.date(2026, 7, 14), dt.date(2026, 7, 14))),
        (dt.date(2026, 6, 3), 2, (dt.date(2026, 6, 1), dt.date(2026, 6, 2))),  # clipped to history
        (dt.date(2026, 6, 2), 2, (dt.date(2026, 6, 1), dt.date(2026, 6, 1))),
        (dt.date(2026, 6, 1), 2, None),
    ],
)
def test_refresh_range(tick_day, late, expected):
    assert refresh_range(tick_day, late, START) == expected


@pytest.mark.parametrize(("stale", "expected_first"), [
    ((), dt.date(2026, 7, 12)),
    ((dt.date(2026, 7, 3), dt.date(2026, 7, 9)), dt.date(2026, 7, 3)),  # a resync changed earlier days
    ((dt.date(2026, 7, 13),), dt.date(2026, 7, 12)),  # inside the usual range: nothing to add
    ((dt.date(2026, 5, 20),), START),  # before the first partition: the range starts there
    ((dt.date(2026, 7, 20),), dt.date(2026, 7, 12)),  # after yesterday: the next days' runs reach it
])
def test_the_daily_range_starts_at_the_earliest_day_the_source_changed(stale, expected_first):
    assert refresh_range(dt.date(2026, 7, 15), 2, START, stale) == (expected_first, dt.date(2026, 7, 14))


def test_a_tick_asks_the_source_for_its_stale_days(tmp_path):
    class Changed(FolderSource):
        def stale_days(self):
            return [dt.date(2026, 7, 1)]

    schedule = defs.resolve_schedule_def(DAILY_SCHEDULE)
    [request] = _tick(schedule, dt.datetime(2026, 7, 15, 2, 0, tzinfo=dt.UTC),
                      Changed(raw_dir=str(tmp_path))).run_requests
    assert request.tags["dagster/asset_partition_range_start"] == "2026-07-01"


@given(tick_day=st.dates(dt.date(2026, 6, 2), dt.date(2030, 1, 1)), late=st.integers(0, 60))
def test_refresh_range_ends_yesterday_and_covers_late_days_within_history(tick_day, late):
    first_day, last_day = refresh_range(tick_day, late, START)
    assert last_day == tick_day - dt.timedelta(days=1)
    assert first_day >= START
    assert (last_day - first_day).days == min(late, (last_day - START).days)


def test_only_the_sync_table_carries_the_freshness_policy():
    policies = {key.to_user_string(): a.specs_by_key[key].freshness_policy for a in defs.assets for key in a.keys}
    assert policies.pop("sync_export") == EXPORT_FRESHNESS
    assert set(policies.values()) == {None}


@pytest.mark.slow
def test_rerunning_one_asset_for_one_day_replaces_only_that_day(tmp_path):
    """As the UI's "Materialize" on one asset and one partition does: the score stage for 2026-06-03."""
    from health_pipeline.definitions import build_assets
    from health_pipeline.resources import ExportTarget, PostgresTarget
    from health_pipeline.sample import SampleSpec, generate_sample
    from health_pipeline.scorecard.parser import load_config
    from health_pipeline_tests.conftest import Pipeline, run_records

    pipeline = Pipeline(tmp_path)
    generate_sample(pipeline.raw_dir, SampleSpec(accounts=6, days=5, seed=1))
    pipeline.materialize("2026-06-01", "2026-06-05")
    before = pipeline.query("SELECT * FROM core.account_health ORDER BY ALL")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:  # a stale score to be replaced
        conn.execute("UPDATE core.account_health SET health_score = 0 WHERE snapshot_date = '2026-06-03'")

    settings = load_config()
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        build_assets(settings),
        selection=dg.AssetSelection.assets("account_health"),
        partition_key="2026-06-03",
        resources={"warehouse": pipeline.warehouse, "raw_source": FolderSource(raw_dir=str(pipeline.raw_dir)),
                   "export_target": ExportTarget(export_dir=str(pipeline.export_dir)), "postgres": PostgresTarget()},
        instance=instance,
    )
    assert result.success
    # The run records its own day; the later days whose trend reads it, refreshed in the same
    # run, are recorded beside it, so a backfill counts only the days it targeted.
    events = result.get_asset_materialization_events()
    assert [(e.asset_key, e.partition) for e in events] == [(dg.AssetKey("account_health"), "2026-06-03")]
    recorded = run_records(instance, result.run_id, "account_health")
    assert {day: record.run_id for day, record in recorded.items()} == {
        "2026-06-03": result.run_id, "2026-06-04": "", "2026-06-05": ""}
    customers = (pd.read_parquet(pipeline.raw_dir / "accounts.parquet")["status"] != "churned").sum()
    # One record a day, each with the day's own rows and accounts per band; a later day's names the
    # run, links it, and carries the code and data versions of the run's own day (what "Unsynced" reads).
    records = {day: record.asset_materialization.metadata for day, record in recorded.items()}
    lineage = recorded["2026-06-03"].asset_materialization.tags
    assert lineage["dagster/code_version"] == settings.scoring_version and lineage["dagster/data_version"]
    for day in ("2026-06-04", "2026-06-05"):
        assert recorded[day].asset_materialization.tags == lineage
        assert records[day]["refreshed_by_run"].value == result.run_id
    bands = pipeline.query("SELECT CAST(snapshot_date AS VARCHAR) AS day, health_band, count(*) AS n "
                           "FROM core.account_health WHERE snapshot_date >= '2026-06-03' GROUP BY ALL")
    for day, metadata in records.items():
        assert metadata["dagster/row_count"].value == customers
        of_day = bands[bands["day"] == day]
        assert {k: v.value for k, v in metadata.items() if k.startswith("accounts_") and "_in_run" not in k} == {
            f"accounts_{band}": n for band, n in zip(of_day["health_band"], of_day["n"])}
        refreshed_by = metadata.get("refreshed_by_the_run_of")
        assert (refreshed_by and refreshed_by.value) == (None if day == "2026-06-03" else "2026-06-03")
    # The run's totals count every day it wrote, its own and the later ones alike.
    own = records["2026-06-03"]
    assert own["rows_in_run"].value == 3 * customers
    assert own["refreshed_through"].value == "2026-06-05"
    assert sum(v.value for k, v in own.items() if k.endswith("_in_run") and k.startswith("accounts_")) == 3 * customers
    for band in bands["health_band"].unique():
        assert own[f"accounts_{band}_in_run"].value == bands.loc[bands["health_band"] == band, "n"].sum()
    assert {e.check_name for e in result.get_asset_check_evaluations() if e.passed} == {
        "live_accounts_scored_once", "scores_within_0_and_100"}
    pd.testing.assert_frame_equal(pipeline.query("SELECT * FROM core.account_health ORDER BY ALL"), before)
