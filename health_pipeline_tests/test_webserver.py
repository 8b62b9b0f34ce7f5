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
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from health_pipeline import DATA_DIR, PROJECT_ROOT
from health_pipeline.definitions import HEALTH_JOB, defs
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.schedules import DAILY_SCHEDULE
from health_pipeline_tests.conftest import Pipeline, sync_table

BIN = Path(sys.executable).parent
LOCATION = {"repositoryLocationName": "health_pipeline", "repositoryName": "__repository__"}
# Every asset of the code location, as "Materialize all" selects them.
ASSETS = [key.to_user_string() for asset in defs.assets for key in asset.keys]
BACKFILL_DAYS = [(dt.date(2026, 6, 1) + dt.timedelta(days=i)).isoformat() for i in range(11)]  # 06-01 .. 06-11
TICK = dt.datetime(2026, 6, 15, 2, 0, tzinfo=dt.UTC)
DEADLINE = 420  # seconds for any one wait; the backfill daemon wakes every 30 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def live_processes_in_group(pgid: int) -> list[int]:
    """Processes (not zombies) still in a process group, read from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def stop(process: subprocess.Popen) -> None:
    """Stop a process and every process it started (its session's group), politely, then not."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        end = time.monotonic() + grace
        while live_processes_in_group(process.pid) and time.monotonic() < end:
            time.sleep(0.5)
        if not live_processes_in_group(process.pid):
            return


class GraphQL:
    def __init__(self, port: int, processes: dict[str, subprocess.Popen], logs: Path):
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.processes, self.logs = processes, logs

    def __call__(self, query: str, **variables) -> dict:
        request = urllib.request.Request(
            self.url, data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_for(self, what: str, probe, timeout: float = DEADLINE):
        """Poll `probe` until it returns something truthy; fail with the servers' logs otherwise."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, process in self.processes.items():
                assert process.poll() is None, f"{name} exited while waiting for {what}:\n{self.tail()}"
            try:
                found = probe()
            except (urllib.error.URLError, ConnectionError):
                found = None
            if found:
                return found
            time.sleep(1)
        pytest.fail(f"timed out waiting for {what}:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text()[-3000:] for p in sorted(self.logs.glob("*.log")))


@contextmanager
def dagster_services(env: dict, logs: Path):
    """The real dagster-webserver and dagster-daemon on a free 127.0.0.1 port, stopped on exit."""
    port = free_port()
    # Dagster creates its SQLite storage on first use, and the webserver, daemon and code server
    # creating it at once race (alembic "more than one head"); `dagster dev` users have long
    # had theirs created, so create it first.
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.get_runs(limit=1)
        instance.all_instigator_state()
    commands = {
        "webserver": [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        "daemon": [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
    }
    processes = {}
    try:
        for name, command in commands.items():
            with open(logs / f"{name}.log", "w") as log:
                # A session of its own, so the code servers and run workers it starts stop with it.
                processes[name] = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log,
                                                   stderr=subprocess.STDOUT, start_new_session=True)
        yield GraphQL(port, processes, logs)
    finally:
        for process in processes.values():
            stop(process)
        leftovers = {name: live_processes_in_group(p.pid) for name, p in processes.items()}
        assert not any(leftovers.values()), f"processes left running: {leftovers}"
        assert not port_open(port), f"port {port} still open"


def workspace_loaded(gql: GraphQL) -> bool:
    data = gql("""{ workspaceOrError { ... on Workspace { locationEntries {
        loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
    [entry] = data["workspaceOrError"]["locationEntries"]
    error = entry["locationOrLoadError"] or {}
    assert error.get("__typename") != "PythonError", error.get("message")
    return entry["loadStatus"] == "LOADED" and error.get("__typename") == "RepositoryLocation"


def daemons_healthy(gql: GraphQL) -> bool:
    data = gql("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }")
    statuses = {d["daemonType"]: d["healthy"] for d in data["instance"]["daemonHealth"]["allDaemonStatuses"]}
    return all(statuses.get(d) for d in ("SCHEDULER", "BACKFILL", "QUEUED_RUN_COORDINATOR"))


def run_status(gql: GraphQL, run_id: str) -> str:
    data = gql("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", id=run_id)
    return data["runOrError"]["status"]


def finished(status: str) -> str | None:
    return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None



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
