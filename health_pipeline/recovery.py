"""Recovery without a human: the Dagster instance the CLI runs in, and what a dead run leaves.

A CLI run killed by SIGKILL, an OOM killer or a reboot stays STARTED in the instance and keeps
its slot in the `warehouse` pool, so every later run would wait for it forever. Each CLI run
therefore records its process and host as run tags; before a run starts (and on
`health-pipeline recover`), runs whose process is gone are marked failed and their slots freed.
The warehouse needs nothing: each step writes in one transaction, which DuckDB rolls back when
it next opens the file, and staged sync files of a dead process are removed by the next export.
Runs launched by the daemon are watched by Dagster's run monitoring (data/dagster_home/dagster.yaml).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from health_pipeline import DATA_DIR
from health_pipeline.resources import Warehouse

PID_TAG = "health/pid"
HOST_TAG = "health/host"
UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
              dg.DagsterRunStatus.CANCELING]


def process_tags() -> dict[str, str]:
    """The run tags that let a later run tell whether this process is still alive."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _dead_here(run: dg.DagsterRun) -> bool:
    """A run started by a CLI process of this host that no longer exists."""
    pid = run.tags.get(PID_TAG)
    return bool(pid) and run.tags.get(HOST_TAG) == socket.gethostname() and not _alive(int(pid))


INSTANCE_CONFIG = DATA_DIR / "dagster_home" / "dagster.yaml"  # the project's instance settings


def dagster_home() -> Path:
    """DAGSTER_HOME, else the repo's instance (data/dagster_home), where `dg dev` finds the runs."""
    return Path(os.environ.get("DAGSTER_HOME") or DATA_DIR / "dagster_home")


@contextmanager
def open_instance():
    """The instance in dagster_home(). Creating its storage is serialised with a file lock, so
    several runs started at once on a fresh home do not race on its first migration."""
    home = dagster_home().resolve()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / "dagster.yaml").exists():
            # A new home gets the project's settings (the warehouse pool, run monitoring), so its
            # runs queue for the warehouse as the UI's do.
            shutil.copyfile(INSTANCE_CONFIG, home / "dagster.yaml")
        instance = dg.DagsterInstance.from_config(str(home))
        fcntl.flock(lock, fcntl.LOCK_UN)
    try:
        yield instance
    finally:
        instance.dispose()


def end_run(instance: dg.DagsterInstance, run: dg.DagsterRun, why: str) -> None:
    """Mark an unfinished run failed and free the pool slots its steps held."""
    if run.status in UNFINISHED:
        instance.report_run_failed(run, message=why)
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


def recover(instance: dg.DagsterInstance, run_ids: tuple[str, ...] = ()) -> list[str]:
    """End the runs whose process is gone (and any run named in `run_ids`); return what was done."""
    done = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED)):
        if run.run_id in run_ids or _dead_here(run):
            why = (f"its process {run.tags[PID_TAG]} is gone" if _dead_here(run)
                   else "named by health-pipeline recover")
            end_run(instance, run, f"recovered: {why}")
            done.append(f"run {run.run_id}: marked failed ({why}); its warehouse pool slots freed")
    return done


def check_warehouse(warehouse: Warehouse) -> str:
    """Open the warehouse once, which makes DuckDB roll back whatever a dead writer left open."""
    if not Path(warehouse.database).exists():
        return f"warehouse {warehouse.database}: none yet (the first run builds it)"
    with warehouse.get_connection() as conn:
        tables = conn.execute("SELECT count(*) FROM duckdb_tables()").fetchall()[0][0]
    return f"warehouse {warehouse.database}: opens cleanly, {tables} tables"


@contextmanager
def stop_cleanly_on_signals():
    """SIGTERM and SIGINT stop a run: the step in progress is interrupted and its transaction
    rolls back. Yields the list of signals received, so the caller can end the run and free its
    slots whether Dagster reported the interruption as a failed step or let it propagate."""
    received: list[signal.Signals] = []

    def interrupt(signum, frame):
        received.append(signal.Signals(signum))
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
