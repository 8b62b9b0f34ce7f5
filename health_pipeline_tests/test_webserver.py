"""End to end through the real Dagster webserver and daemon, driven over GraphQL as the UI drives them.

A backfill of 2026-06-01 .. 06-11 is launched the way the UI's "Materialize…" dialog launches one
(launchPartitionBackfill with every asset and the partition keys); the daemon turns it into
one run. Then the daily schedule is evaluated for its 2026-06-15 02:00 UTC tick, as the UI's
"Test schedule" does (scheduleDryRun), and the run it requests is launched, which refreshes
06-12 .. 06-14 on top of the backfill. The sync table must equal what one in-process run of
06-01 .. 06-14 produces.

On a warehouse that already holds later days, a backfill of every asset is one run too, and its
page counts the days it targeted; after a scorecard edit, the UI marks "Unsynced" exactly the days
an older scorecard scored, whichever run's windows scored them last. Processes and the port are
cleaned up even when a test fails.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from health_pipeline import DATA_DIR
from health_pipeline.definitions import HEALTH_JOB
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.schedules import DAILY_SCHEDULE
from health_pipeline.scorecard.parser import load_config
from health_pipeline.settings import DEFAULT_CONFIG_PATH
from health_pipeline_tests.conftest import Pipeline, sync_table
from health_pipeline_tests.webserver import (
    ASSETS,
    LOCATION,
    backfill,
    backfill_done,
    daemons_healthy,
    dagster_services,
    finished,
    launch_backfill,
    lower_a_threshold,
    reload_location,
    run_status,
    stale_status,
    workspace_loaded,
)

BACKFILL_DAYS = [(dt.date(2026, 6, 1) + dt.timedelta(days=i)).isoformat() for i in range(11)]  # 06-01 .. 06-11
TICK = dt.datetime(2026, 6, 15, 2, 0, tzinfo=dt.UTC)


def scratch_env(root: Path, **settings: str) -> dict:
    """The environment of a deployment under `root`, laid out as conftest.Pipeline lays one out:
    a fresh DAGSTER_HOME with the repo's dagster.yaml, raw/, warehouse.duckdb and exports/, the
    first partition 2026-06-01, and the default two late days; logs/ for the services' output."""
    home = root / "dagster_home"
    home.mkdir()
    (root / "logs").mkdir()
    shutil.copy(DATA_DIR / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "HEALTH_RAW_DIR": str(root / "raw"),
        "HEALTH_WAREHOUSE": str(root / "warehouse.duckdb"),
        "HEALTH_EXPORT_DIR": str(root / "exports"),
        "HEALTH_PARTITIONS_START": "2026-06-01",
        "PYTHONUNBUFFERED": "1",
        **settings,
    }
    env.pop("HEALTH_LATE_DAYS", None)
    return env


@pytest.mark.slow
def test_backfill_and_schedule_tick_through_the_webserver_match_the_cli(tmp_path):
    generate_sample(tmp_path / "raw", SampleSpec(accounts=8, days=14, seed=9))
    env = scratch_env(tmp_path)

    with dagster_services(env, tmp_path / "logs") as gql:
        gql.wait_for("the code location to load", lambda: workspace_loaded(gql))

        # The schedule is on without anyone switching it on, and its next tick is at 02:00 UTC.
        schedule_selector = {**LOCATION, "scheduleName": DAILY_SCHEDULE}
        schedule = gql("""query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) {
            ... on Schedule { scheduleState { status } futureTicks(limit: 1) { results { timestamp } } } } }""",
                       s=schedule_selector)["scheduleOrError"]
        assert schedule["scheduleState"]["status"] == "RUNNING"
        next_tick = dt.datetime.fromtimestamp(schedule["futureTicks"]["results"][0]["timestamp"], dt.UTC)
        assert (next_tick.hour, next_tick.minute) == (2, 0)

        gql.wait_for("the daemons", lambda: daemons_healthy(gql))

        # 1. The backfill, as the UI launches it for an asset selection and a partition range.
        backfill_id = launch_backfill(gql, ASSETS, BACKFILL_DAYS)

        def backfill_run():
            runs = backfill(gql, backfill_id)["runs"]
            return runs if runs and finished(runs[0]["status"]) else None

        runs = gql.wait_for("the backfill's run", backfill_run)
        # single-run backfill policy: one run for all eleven days
        assert len(runs) == 1 and runs[0]["status"] == "SUCCESS", gql.tail()
        tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
        assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
            "2026-06-01", "2026-06-11")

        # 2. A schedule tick: evaluated by the code server for 2026-06-15 02:00 UTC, as "Test schedule" does.
        tick = gql("""mutation($s: ScheduleSelector!, $t: Float) { scheduleDryRun(selectorData: $s, timestamp: $t) {
            __typename ... on DryRunInstigationTick { evaluationResult {
                runRequests { runKey runConfigYaml tags { key value } } skipReason error { message } } }
            ... on PythonError { message } } }""", s=schedule_selector, t=TICK.timestamp())["scheduleDryRun"]
        evaluation = tick["evaluationResult"]
        assert evaluation["error"] is None and evaluation["skipReason"] is None, evaluation
        [request] = evaluation["runRequests"]
        request_tags = {t["key"]: t["value"] for t in request["tags"]}
        assert request["runKey"] == "2026-06-14"
        assert (request_tags["dagster/asset_partition_range_start"],
                request_tags["dagster/asset_partition_range_end"]) == ("2026-06-12", "2026-06-14")
        # ... and launched as the UI's "Launch run" does; the daemon's queue starts it.
        launched_run = gql("""mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
            __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }""",
                           p={"selector": {**LOCATION, "jobName": HEALTH_JOB},
                              "runConfigData": request["runConfigYaml"],
                              "executionMetadata": {"tags": request["tags"]}, "mode": "default"})["launchRun"]
        assert launched_run["__typename"] == "LaunchRunSuccess", launched_run
        run_id = launched_run["run"]["runId"]
        assert gql.wait_for("the scheduled run", lambda: finished(run_status(gql, run_id))) == "SUCCESS", gql.tail()

        status = gql.wait_for("the backfill to complete", lambda: backfill_done(gql, backfill_id))["status"]
        assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status

    # The same days through the CLI's path (one in-process run of the whole range) give the same sync table.
    reference = Pipeline(tmp_path / "reference")
    shutil.copytree(tmp_path / "raw", reference.raw_dir)
    reference.materialize("2026-06-01", "2026-06-14")
    served = sync_table(tmp_path / "warehouse.duckdb")
    assert served["snapshot_date"].nunique() == 14 and len(served) >= 14 * 5
    pd.testing.assert_frame_equal(served, sync_table(reference.root / "warehouse.duckdb"))
    for day in ("2026-06-01", "2026-06-11", "2026-06-14"):
        name = f"snapshot_date={day}.parquet"
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "exports" / "account_health" / name).drop(columns="computed_at"),
            pd.read_parquet(reference.export_dir / "account_health" / name).drop(columns="computed_at"),
        )



DAYS = [f"2026-06-0{day}" for day in range(1, 7)]
SCORING = ["account_health", "sync_export", "band_changes", "morning_report"]
METRICS = ["contact_metrics", "account_metrics"]


@pytest.mark.slow
def test_a_lineage_backfill_is_one_run_and_unsynced_marks_the_days_an_older_scorecard_scored(tmp_path):
    """Every asset for 06-03 .. 06-05, on a warehouse that holds 06-01 .. 06-06, launched as
    Lineage → Materialize all launches it: one run, which also rescores 06-06 (its windows reach
    it). Then the scorecard changes, and one day is rescored with it from the CLI's path."""
    generate_sample(tmp_path / "raw", SampleSpec(accounts=6, days=6, seed=5))
    scorecard = tmp_path / "scorecard.yaml"
    scorecard.write_text(DEFAULT_CONFIG_PATH.read_text())
    env = scratch_env(tmp_path, HEALTH_CONFIG=str(scorecard))

    def run_in_process(first_day: str, last_day: str) -> None:
        """A run of every asset in the test's process, recorded in the services' instance."""
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            Pipeline(tmp_path, settings=load_config(scorecard), instance=instance).materialize(first_day, last_day)

    run_in_process(DAYS[0], DAYS[-1])
    with dagster_services(env, tmp_path / "logs") as gql:
        gql.wait_for("the code location to load", lambda: workspace_loaded(gql))
        gql.wait_for("the daemons", lambda: daemons_healthy(gql))

        backfill_id = launch_backfill(gql, ASSETS, DAYS[2:5])
        done = gql.wait_for("the backfill to finish", lambda: backfill_done(gql, backfill_id))
        assert done["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), gql.tail()
        [run] = done["runs"]  # every asset shares one partitioning and one backfill policy
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert run["status"] == "SUCCESS", gql.tail()
        assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
            DAYS[2], DAYS[4])
        # Its page counts the three days per asset, not 06-06, which the run rescored too.
        counts = {status["assetKey"]["path"][0]: (status["numPartitionsTargeted"], status["numPartitionsMaterialized"])
                  for status in done["assetBackfillData"]["assetBackfillStatuses"]}
        assert counts == dict.fromkeys(ASSETS, (3, 3))

        # A scorecard edit: every day was scored with the old scorecard, 06-06 last by the
        # backfill's windows, so every day of every scoring asset is Unsynced; the metrics are not.
        lower_a_threshold(scorecard)
        reload_location(gql)
        statuses = gql.wait_for("the new code version", lambda: (
            s := stale_status(gql, SCORING + METRICS, DAYS))["account_health"][DAYS[0]] == "STALE" and s)
        assert statuses == {**{asset: dict.fromkeys(DAYS, "STALE") for asset in SCORING},
                            **{asset: dict.fromkeys(DAYS, "FRESH") for asset in METRICS}}

        # 06-02 rescored with the new scorecard rescores every later day too: only 06-01 is left
        # Unsynced, and of the morning report the sites it did not build again (06-03 .. 06-05).
        run_in_process(DAYS[1], DAYS[1])
        rescored = {day: "STALE" if day == DAYS[0] else "FRESH" for day in DAYS}
        assert stale_status(gql, SCORING + METRICS, DAYS) == {
            **{asset: rescored for asset in SCORING[:-1]},
            "morning_report": {**rescored, **dict.fromkeys(DAYS[2:5], "STALE")},
            **{asset: dict.fromkeys(DAYS, "FRESH") for asset in METRICS}}
