"""Recovery without a human: the Dagster instance the CLI runs in, and what a dead run leaves.

A run killed by SIGKILL, an OOM killer or a reboot stays STARTED in the instance and keeps its
slot in the `warehouse` pool (or its place in the pool's queue), so every later run would wait
for it forever, whoever launched it: `health-pipeline run`, `dg launch`, `dagster asset
materialize`, the UI. `recover` ends such runs and frees their slots. `health-pipeline run`
calls it before it starts, and again every few seconds while it waits for the pool
(`wait_for_the_warehouse`, which says who holds it); `health-pipeline recover` calls it on demand.

Which runs are dead. `recover` ends an unfinished run by itself only when all three hold:
1. It ran on this machine: its `health/host` tag names this host. The CLI tags its runs when it
   launches them; any other run is tagged by the warehouse resource as the run sets it up,
   before its first step claims a slot (`Warehouse.setup_for_execution`).
2. Its process no longer exists: the process that wrote the run's latest Dagster event (every
   event records its process id, so this is the process running the run's steps, whatever
   launched it), or before its first event the process its `health/pid` tag names.
3. No process has the warehouse file open for writing. DuckDB grants that lock to one process,
   and a run in the middle of a statement holds it; a read-only open, which writes nothing, is
   refused naming the holder (`Warehouse.lock_holder`). This guards against a live process that
   this machine cannot see by its id (another container sharing the hostname and the disk).
A free lock alone never ends a run: a live run holds its slot without the lock for a moment (a
step that has not opened the warehouse yet, or is between two of its connections). A run of
another machine (the same DAGSTER_HOME on a shared disk) cannot be probed by its process id, so
it is never ended by itself: the waiting run names it and its host, and `health-pipeline recover
--run-id ID` ends it once you know it is dead. A run that has ended but still holds a slot (its
process stopped between recording the end and freeing the slot) gets the slot freed.

The warehouse needs nothing: each step writes in one transaction, which DuckDB rolls back when
it next opens the file, and staged sync files of a dead process are removed by the next export.
Runs launched by the daemon are also watched by Dagster's run monitoring
(data/dagster_home/dagster.yaml).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from health_pipeline import DATA_DIR
from health_pipeline.progress import ConsoleLines

if TYPE_CHECKING:  # the warehouse resource records each run's process with record_process below
    from health_pipeline.resources import Warehouse

PID_TAG = "health/pid"
HOST_TAG = "health/host"
UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
              dg.DagsterRunStatus.CANCELING]
WAIT_SECONDS = 5  # how often a run waiting for the warehouse looks again and says who holds it


def process_tags() -> dict[str, str]:
    """The run tags that let a later run tell whether this process is still alive."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def record_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Tag a run with this process and host, unless its launcher did (the CLI tags its own)."""
    if HOST_TAG not in run.tags:
        instance.add_run_tags(run.run_id, process_tags())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _run_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    """The process running the run: the one that wrote its latest Dagster event, else (before its
    first) the one its tag names. The events planned when a run is created carry no process."""
    latest = instance.get_records_for_run(run.run_id, of_type=set(dg.DagsterEventType), ascending=False,
                                          limit=20).records
    pids = [record.event_log_entry.dagster_event.pid for record in latest
            if record.event_log_entry.dagster_event.pid is not None]
    tagged = run.tags.get(PID_TAG)
    return pids[0] if pids else int(tagged) if tagged else None


def _gone_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    """The id of the process a run of this machine ran in, when that process no longer exists;
    None when it may be alive or cannot be probed from here (another machine, no record)."""
    if run.tags.get(HOST_TAG) != socket.gethostname():
        return None
    pid = _run_process(instance, run)
    # A run recorded with this process's own id ran in an earlier process that had it (a restarted
    # container numbers its processes from 1 again).
    return pid if pid is not None and (pid == os.getpid() or not _alive(pid)) else None


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


def recover(instance: dg.DagsterInstance, warehouse: Warehouse, run_ids: tuple[str, ...] = ()) -> list[str]:
    """End the runs that are dead by the rule of this module's docstring (and any run named in
    `run_ids`), and free the slots of runs that have ended; return what was done."""
    done = []
    pool = instance.event_log_storage.get_concurrency_info(warehouse.POOL)
    for run_id in {step.run_id for step in [*pool.claimed_slots, *pool.pending_steps]}:
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            done.append(f"run {run_id}: had ended but still held its warehouse pool slot; freed")
    named, gone = [], []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED)):
        if run.run_id in run_ids:
            named.append((run, "named by health-pipeline recover"))
        elif (pid := _gone_process(instance, run)) is not None:
            gone.append((run, f"its process {pid} is gone"))
    if gone and (holder := warehouse.lock_holder()) is not None:
        done += [f"run {run.run_id}: {why}, but {holder} has the warehouse open: left unfinished; "
                 "`health-pipeline recover` ends it once that process is done" for run, why in gone]
        gone = []
    for run, why in named + gone:
        end_run(instance, run, f"recovered: {why}")
        done.append(f"run {run.run_id}: marked failed ({why}); its warehouse pool slots freed")
    return done


def wait_for_the_warehouse(instance: dg.DagsterInstance, warehouse: Warehouse) -> None:
    """Return once no other run holds a warehouse pool slot or queues for one, so that a run
    handed to Dagster's executor starts at once (its own wait for a slot cannot be interrupted).
    Until then, every few seconds: end the holders that are dead and say who holds it."""
    lines, said, started, waited = ConsoleLines(), set(), time.monotonic(), False
    while True:
        for line in recover(instance, warehouse):
            if line not in said:  # a run left unfinished is reported once, not every few seconds
                lines.show(line, final=True)
                said.add(line)
        pool = instance.event_log_storage.get_concurrency_info(warehouse.POOL)
        if pool.limit is None or (not pool.pending_steps and len(pool.claimed_slots) < pool.limit):
            if waited:
                lines.show(f"the warehouse is free after {time.monotonic() - started:.0f} s of waiting", final=True)
            return
        lines.show(f"waiting for the warehouse ({time.monotonic() - started:.0f} s): {_who_holds(instance, pool)}",
                   final=False)
        waited = True
        time.sleep(WAIT_SECONDS)


def _who_holds(instance: dg.DagsterInstance, pool) -> str:
    """Which run holds the warehouse pool (else is first in its queue), since when, and how to end it."""
    # A step that holds a slot keeps its place in the queue, stamped with when it got the slot.
    holding = [step for step in pool.pending_steps if step.assigned_timestamp is not None]
    if holding or not pool.pending_steps:
        step = (holding or pool.claimed_slots)[0]
        state = f"holds it since {step.assigned_timestamp:%Y-%m-%d %H:%M:%S} UTC" if holding else "holds it"
    else:
        step = min(pool.pending_steps, key=lambda step: step.enqueued_timestamp)
        state = f"is queued for it since {step.enqueued_timestamp:%Y-%m-%d %H:%M:%S} UTC"
    run_id, step_key = step.run_id, step.step_key
    run = instance.get_run_by_id(run_id)
    pid = _run_process(instance, run) if run is not None else None
    host = run.tags.get(HOST_TAG) if run is not None else None
    where = "this machine" if host == socket.gethostname() else host or "a machine it did not record"
    return (f"run {run_id} {state} (step {step_key}, process {pid or '?'} on {where}); if that process is "
            f"gone, `health-pipeline recover` ends the run (with `--run-id {run_id}` if it ran on another machine)")


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
