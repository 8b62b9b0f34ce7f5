"""End to end through the real Dagster webserver and daemon, driven over GraphQL as the UI drives them.

A backfill of 2026-06-01 .. 06-11 is launched the way the UI's "Materialize…" dialog launches one
(launchPartitionBackfill with every asset and the partition keys); the daemon turns it into
one run. Then the daily schedule is evaluated for its 2026-06-15 02:00 UTC tick, as the UI's
"Test schedule" does (scheduleDryRun), and the run it requests is launched, which refreshes
06-12 .. 06-14 on top of the backfill. The sync table must equal what one in-process run of
06-01 .. 06-14 produces. Processes and the port are cleaned up even when the test fails.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil

import pandas as pd
import pytest

from health_pipeline import DATA_DIR
from health_pipeline.definitions import HEALTH_JOB
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.schedules import DAILY_SCHEDULE
from health_pipeline_tests.conftest import Pipeline, sync_table
from health_pipeline_tests.webserver import (
    ASSETS,
    LOCATION,
    daemons_healthy,
    dagster_services,
    finished,
    run_status,
    workspace_loaded,
)

BACKFILL_DAYS = [(dt.date(2026, 6, 1) + dt.timedelta(days=i)).isoformat() for i in range(11)]  # 06-01 .. 06-11
TICK = dt.datetime(2026, 6, 15, 2, 0, tzinfo=dt.UTC)


@pytest.mark.slow
def test_backfill_and_schedule_tick_through_the_webserver_match_the_cli(tmp_path):
    raw = tmp_path / "raw"
    generate_sample(raw, SampleSpec(accounts=8, days=14, seed=9))
    home, logs = tmp_path / "dagster_home", tmp_path / "logs"
    home.mkdir()
    logs.mkdir()
    shutil.copy(DATA_DIR / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "HEALTH_RAW_DIR": str(raw),
        "HEALTH_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "HEALTH_EXPORT_DIR": str(tmp_path / "exports"),
        "HEALTH_PARTITIONS_START": "2026-06-01",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("HEALTH_LATE_DAYS", None)  # the default: two late days

    with dagster_services(env, logs) as gql:
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
        launched = gql("""mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
            __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }""",
                       p={"assetSelection": [{"path": [a]} for a in ASSETS], "partitionNames": BACKFILL_DAYS,
                          "fromFailure": False, "tags": []})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_query = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
            ... on PartitionBackfill { status runs { runId status tags { key value } } } } }"""

        def backfill_run():
            backfill = gql(backfill_query, id=launched["backfillId"])["partitionBackfillOrError"]
            return backfill["runs"] if backfill["runs"] and finished(backfill["runs"][0]["status"]) else None

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

        status = gql.wait_for("the backfill to complete", lambda: (
            s := gql(backfill_query, id=launched["backfillId"])["partitionBackfillOrError"]["status"]
        ) not in ("REQUESTED", "CANCELING", "FAILING") and s)
        assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status

    # The same days through the CLI's path (one in-process run of the whole range) give the same sync table.
    reference = Pipeline(tmp_path / "reference")
    shutil.copytree(raw, reference.raw_dir)
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

