"""The real Dagster webserver and daemon for tests, on a free 127.0.0.1 port, driven over GraphQL
as the UI drives them; every process they start is stopped, and the port closed, on exit."""

from __future__ import annotations

import json
import os
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
import pytest

from health_pipeline import PROJECT_ROOT
from health_pipeline.definitions import defs

BIN = Path(sys.executable).parent
LOCATION = {"repositoryLocationName": "health_pipeline", "repositoryName": "__repository__"}
DEADLINE = 420  # seconds for any one wait; the backfill daemon wakes every 30 s
# Every asset of the code location, as "Materialize all" selects them.
ASSETS = [key.to_user_string() for asset in defs.assets for key in asset.keys]


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


def reload_location(gql: GraphQL) -> None:
    """The UI's "Reload" of the code location, as after an edit to the code or the scorecard."""
    gql('mutation { reloadRepositoryLocation(repositoryLocationName: "health_pipeline") { __typename } }')
    gql.wait_for("the code location to reload", lambda: workspace_loaded(gql))


def lower_a_threshold(scorecard: Path) -> None:
    """A scorecard edit that changes the scoring assets' code version: usage_level's bins move."""
    scorecard.write_text(scorecard.read_text().replace('"[1, 50)"', '"[1, 20)"').replace('"[50, 200)"', '"[20, 200)"'))


def stale_status(gql: GraphQL, assets: list[str], days: list[str]) -> dict[str, dict[str, str]]:
    """Per asset and day, what the UI shows of that partition: FRESH, STALE ("Unsynced") or MISSING."""
    data = gql("""query($keys: [AssetKeyInput!], $days: [String!]!) { assetNodes(assetKeys: $keys) {
        assetKey { path } staleStatusByPartition(partitions: $days) } }""",
               keys=[{"path": [a]} for a in assets], days=days)
    return {node["assetKey"]["path"][0]: dict(zip(days, node["staleStatusByPartition"])) for node in data["assetNodes"]}


def launch_backfill(gql: GraphQL, assets: list[str], days: list[str]) -> str:
    """A backfill of `assets` for `days`, launched as the Lineage page's "Materialize all" dialog
    launches one (launchPartitionBackfill with the asset selection and the partition keys)."""
    launched = gql("""mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
        __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }""",
                   p={"assetSelection": [{"path": [a]} for a in assets], "partitionNames": days,
                      "fromFailure": False, "tags": []})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def backfill(gql: GraphQL, backfill_id: str) -> dict:
    """A backfill as its page shows it: its status, its runs, and per asset the days it targeted and did."""
    return gql("""query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
        status runs { runId status tags { key value } }
        assetBackfillData { assetBackfillStatuses { ... on AssetPartitionsStatusCounts {
            assetKey { path } numPartitionsTargeted numPartitionsMaterialized numPartitionsFailed } } } } } }""",
               id=backfill_id)["partitionBackfillOrError"]


def backfill_done(gql: GraphQL, backfill_id: str) -> dict | None:
    found = backfill(gql, backfill_id)
    return found if found["status"] not in ("REQUESTED", "CANCELING", "FAILING") else None
