"""Recovery from a dead run whoever launched it: `health-pipeline run`, `dg launch` or `dagster
asset materialize` (health_pipeline/recovery.py's rule), and a run that waits for a live one.

The first tests hold the rule to hand-made runs in a fresh instance; the `slow` ones launch real
runs through Dagster's own CLI (crash_driver stops them at a chosen point, holding the warehouse
pool slot) and kill them, or let them finish, while `health-pipeline` waits or recovers.
"""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from health_pipeline.definitions import defs
from health_pipeline.recovery import HOST_TAG, PID_TAG, recover
from health_pipeline.resources import Warehouse
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline_tests.test_crash_safety import CLI, env_for, home_for

POOL = Warehouse.POOL
DAY = "2026-06-02"
# The raw_activity step: Dagster runs a multi-asset's step only with all of its assets selected.
RAW_STEP = ",".join(sorted(key.to_user_string() for key in defs.resolve_assets_def("raw_events").keys))
MATERIALIZE = ["dagster", "asset", "materialize", "-m", "health_pipeline.definitions", "--select", RAW_STEP,
               "--partition", DAY]
LAUNCH = ["dg", "launch", "-m", "health_pipeline.definitions", "--assets", RAW_STEP, "--partition", DAY]
HERE = socket.gethostname()


# --- the rule, on hand-made runs --------------------------------------------------------------

@dg.op
def step():
    pass


@dg.job
def job():
    step()


@pytest.fixture
def instance(tmp_path):
    with dg.DagsterInstance.from_config(str(home_for(tmp_path))) as instance:
        instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
        yield instance


def a_run(instance: dg.DagsterInstance, tags: dict, holds_the_slot: bool = False) -> str:
    """An unfinished run with these tags, holding the warehouse pool's one slot if asked."""
    run = instance.create_run_for_job(job_def=job, tags=tags)
    if holds_the_slot:
        assert instance.event_log_storage.claim_concurrency_slot(POOL, run.run_id, "step").is_claimed
    return run.run_id


def gone_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# A run as Dagster's own CLI launches one, with no process tags, whose one step uses the warehouse
# resource and its pool: it dies in its step (killing its process) or stays in it.
LAUNCHED_ELSEWHERE = """
import os, signal, sys, time
import dagster as dg
from health_pipeline.resources import Warehouse

@dg.op(pool=Warehouse.POOL, required_resource_keys={"warehouse"})
def step():
    print("in the step", flush=True)
    if sys.argv[2] == "dies":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(120)

@dg.job(resource_defs={"warehouse": Warehouse(database=sys.argv[3])})
def job():
    step()

with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    job.execute_in_process(instance=instance)
"""


def launched_elsewhere(instance: dg.DagsterInstance, warehouse: Warehouse, fate: str) -> subprocess.Popen:
    """A run in a process of its own that reaches its step (holding the pool's slot), where it `fate`s."""
    process = subprocess.Popen([sys.executable, "-c", LAUNCHED_ELSEWHERE, instance.root_directory, fate,
                                warehouse.database], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "in the step\n"
    return process


def statuses(instance: dg.DagsterInstance) -> dict[str, dg.DagsterRunStatus]:
    return {run.run_id: run.status for run in instance.get_runs()}


def claimed(instance: dg.DagsterInstance) -> list[str]:
    return [slot.run_id for slot in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots]


def test_only_a_run_of_this_machine_whose_process_is_gone_is_ended(instance, tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "warehouse.duckdb"))
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        dead = a_run(instance, {HOST_TAG: HERE, PID_TAG: str(pid := gone_pid())}, holds_the_slot=True)
        alive = a_run(instance, {HOST_TAG: HERE, PID_TAG: str(sleeper.pid)})
        elsewhere = a_run(instance, {HOST_TAG: "another-machine", PID_TAG: str(gone_pid())})
        unrecorded = a_run(instance, {})  # no process or host known: a run of before the tags
        assert recover(instance, warehouse) == [
            f"run {dead}: marked failed (its process {pid} is gone); its warehouse pool slots freed"]
        assert statuses(instance) == {dead: dg.DagsterRunStatus.FAILURE, alive: dg.DagsterRunStatus.NOT_STARTED,
                                      elsewhere: dg.DagsterRunStatus.NOT_STARTED,
                                      unrecorded: dg.DagsterRunStatus.NOT_STARTED}
        assert claimed(instance) == []
        # A run of another machine or of no recorded machine ends only when named.
        assert set(recover(instance, warehouse, (elsewhere, unrecorded))) == {
            f"run {run}: marked failed (named by health-pipeline recover); its warehouse pool slots freed"
            for run in (elsewhere, unrecorded)}
        assert recover(instance, warehouse) == []
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.slow  # two processes of their own
def test_a_run_launched_without_process_tags_is_judged_by_its_events(instance, tmp_path):
    """`dagster asset materialize` and `dg launch` tag no process: the warehouse resource records
    the run's host, and the process is the one that wrote its events. Killed in its step, the run
    is ended; alive in its step, before it opens the warehouse, it is not."""
    warehouse = Warehouse(database=str(tmp_path / "warehouse.duckdb"))
    dies = launched_elsewhere(instance, warehouse, "dies")
    assert dies.wait(timeout=60) == -signal.SIGKILL
    [dead] = instance.get_runs()
    assert dead.tags[HOST_TAG] == HERE and claimed(instance) == [dead.run_id]
    assert recover(instance, warehouse) == [
        f"run {dead.run_id}: marked failed (its process {dies.pid} is gone); its warehouse pool slots freed"]
    stays = launched_elsewhere(instance, warehouse, "stays")
    try:
        live = next(run for run in instance.get_runs() if run.run_id != dead.run_id)
        assert claimed(instance) == [live.run_id] and warehouse.lock_holder() is None
        assert recover(instance, warehouse) == []
        assert statuses(instance) == {dead.run_id: dg.DagsterRunStatus.FAILURE,
                                      live.run_id: dg.DagsterRunStatus.STARTED}
    finally:
        stays.kill()
        stays.wait()


def test_a_dead_run_is_left_while_a_process_has_the_warehouse_open(instance, tmp_path):
    """Whoever has the warehouse file open for writing may be the run, in a process this machine
    cannot see by its id: nothing is ended by itself until the file is free."""
    database = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(database)).close()
    writer = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                               f"conn = duckdb.connect({str(database)!r})\nprint('open', flush=True)\ntime.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "open\n"
        dead = a_run(instance, {HOST_TAG: HERE, PID_TAG: str(pid := gone_pid())}, holds_the_slot=True)
        warehouse = Warehouse(database=str(database))
        [line] = recover(instance, warehouse)
        assert line.startswith(f"run {dead}: its process {pid} is gone, but process {writer.pid} (")
        assert line.endswith("has the warehouse open: left unfinished; `health-pipeline recover` ends it once "
                             "that process is done")
        assert statuses(instance)[dead] == dg.DagsterRunStatus.NOT_STARTED and claimed(instance) == [dead]
    finally:
        writer.kill()
        writer.wait()
    assert recover(instance, warehouse) == [
        f"run {dead}: marked failed (its process {pid} is gone); its warehouse pool slots freed"]
    assert claimed(instance) == []


def test_a_run_that_ended_still_holding_its_slot_has_the_slot_freed(instance, tmp_path):
    """A run marked ended whose slot was never freed (its process stopped in between)."""
    ended = a_run(instance, {HOST_TAG: "another-machine"}, holds_the_slot=True)
    instance.report_run_failed(instance.get_run_by_id(ended))
    assert recover(instance, Warehouse(database=str(tmp_path / "warehouse.duckdb"))) == [
        f"run {ended}: had ended but still held its warehouse pool slot; freed"]
    assert claimed(instance) == []


# --- real runs launched by Dagster's own CLI ---------------------------------------------------

@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("sample") / "raw"
    generate_sample(raw, SampleSpec(accounts=4, days=3, seed=5))  # 2026-06-01 .. 2026-06-03
    return raw


class Lines:
    """A process's standard output, line by line, read in the background so a test can wait for
    a line with a timeout instead of blocking on a process that never prints it."""

    def __init__(self, process: subprocess.Popen):
        self.process, self.lines, self.seen = process, queue.Queue(), []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = 240) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no line starting with {prefix!r} within {timeout} s; saw {self.seen[-20:]}")
            if line is None:
                pytest.fail(f"the process ended without printing {prefix!r}; saw {self.seen[-20:]}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def rest(self) -> str:
        self.process.wait(timeout=300)
        while (line := self.lines.get(timeout=60)) is not None:
            self.seen.append(line)
        return "\n".join(self.seen)


def root_for(tmp_path: Path, sample: Path) -> tuple[Path, dict]:
    (tmp_path / "raw").symlink_to(sample)
    return tmp_path, env_for(tmp_path, DAGSTER_HOME=str(home_for(tmp_path)), CRASH_DRIVER_RESUME=str(tmp_path / "go"))


@pytest.fixture
def processes():
    """The processes a test starts, killed at its end whatever happened (a run left waiting or
    stopped at a point would otherwise outlive the test)."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def launch_paused(env: dict, point: str, command: list[str], processes: list) -> tuple[subprocess.Popen, Lines]:
    """A run launched by Dagster's CLI, stopped at `point` inside the raw step (holding its slot)."""
    process = subprocess.Popen([sys.executable, "-m", "health_pipeline_tests.crash_driver", point, "--", *command],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    processes.append(process)
    lines = Lines(process)
    lines.expect("REACHED")
    return process, lines


def holder(env: dict) -> dg.DagsterRun:
    """The one run in the instance, which holds the warehouse pool's slot."""
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED
        assert [(s.run_id, s.step_key) for s in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots] \
            == [(run.run_id, "raw_activity")]
        return run


def health_pipeline(env: dict, processes: list, *args: str) -> subprocess.Popen:
    process = subprocess.Popen([str(CLI), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    processes.append(process)
    return process


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


@pytest.mark.slow
def test_a_dagster_cli_run_killed_holding_the_slot_is_recovered_by_the_next_run(tmp_path, sample, processes):
    """Before, the next `health-pipeline run` printed "materializing" and waited in Dagster's
    executor for the dead run's slot forever."""
    root, env = root_for(tmp_path, sample)
    launcher, _ = launch_paused(env, "sql:DELETE FROM raw.events:1", MATERIALIZE, processes)  # in the warehouse
    dead = holder(env)
    kill(launcher)
    run = health_pipeline(env, processes, "run", "--start", DAY, "--end", DAY)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    assert out.splitlines()[0] == (f"run {dead.run_id}: marked failed (its process {launcher.pid} is gone); "
                                   "its warehouse pool slots freed")
    assert "waiting for the warehouse" not in out
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = {r.run_id: r.status for r in instance.get_runs()}
        assert runs.pop(dead.run_id) == dg.DagsterRunStatus.FAILURE
        assert list(runs.values()) == [dg.DagsterRunStatus.SUCCESS]
        assert instance.event_log_storage.get_concurrency_info(POOL).claimed_slots == []


@pytest.mark.slow
def test_recover_ends_a_dg_launch_run_killed_holding_the_slot(tmp_path, sample, processes):
    root, env = root_for(tmp_path, sample)
    launcher, _ = launch_paused(env, "sql:DELETE FROM raw.events:1", LAUNCH, processes)
    dead = holder(env)
    kill(launcher)
    result = subprocess.run([str(CLI), "recover"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    recovered, checked = result.stdout.splitlines()
    assert recovered == (f"run {dead.run_id}: marked failed (its process {launcher.pid} is gone); "
                         "its warehouse pool slots freed")
    assert checked.startswith(f"warehouse {root / 'warehouse.duckdb'}: opens cleanly, ")
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert [r.status for r in instance.get_runs()] == [dg.DagsterRunStatus.FAILURE]
        assert instance.event_log_storage.get_concurrency_info(POOL).claimed_slots == []


@pytest.mark.slow
def test_a_live_run_holding_the_slot_is_waited_for_not_ended(tmp_path, sample, processes):
    """A run between the start of its step and its first connection holds the slot and not the
    warehouse file: recover leaves it, and `health-pipeline run` says who holds the warehouse and
    starts once that run has finished."""
    root, env = root_for(tmp_path, sample)
    duckdb.connect(str(root / "warehouse.duckdb")).close()  # a warehouse there, which the run has not opened yet
    launcher, launched = launch_paused(env, "connect:1", MATERIALIZE, processes)
    live = holder(env)
    duckdb.connect(str(root / "warehouse.duckdb"), read_only=True).close()  # no process has it open for writing
    recovered = subprocess.run([str(CLI), "recover"], env=env, capture_output=True, text=True, timeout=120)
    assert recovered.stdout.splitlines()[0] == "no unfinished run of a dead process", recovered.stderr[-3000:]
    run = health_pipeline(env, processes, "run", "--start", DAY, "--end", DAY)
    lines = Lines(run)
    waiting = lines.expect("waiting for the warehouse")
    assert re.fullmatch(
        rf"waiting for the warehouse \(\d+ s\): run {live.run_id} holds it since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d "
        rf"UTC \(step raw_activity, process {launcher.pid} on this machine\); if that process is gone, "
        rf"`health-pipeline recover` ends the run \(with `--run-id {live.run_id}` if it ran on another machine\)",
        waiting), waiting
    assert holder(env).run_id == live.run_id  # still STARTED, still holding the slot
    (root / "go").touch()  # the live run goes on and finishes
    assert launcher.wait(timeout=300) == 0, launched.rest()[-3000:]
    lines.expect("the warehouse is free after ")
    lines.expect("materializing every asset")
    out = lines.rest()
    assert run.returncode == 0, run.stderr.read()[-3000:]
    assert "marked failed" not in out
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert [r.status for r in instance.get_runs()] == [dg.DagsterRunStatus.SUCCESS] * 2


@pytest.mark.slow
def test_sigterm_stops_a_run_waiting_for_the_warehouse_at_once(tmp_path, sample, processes):
    """Before, a run waiting for the slot in Dagster's executor ignored SIGTERM."""
    root, env = root_for(tmp_path, sample)
    launch_paused(env, "sql:DELETE FROM raw.events:1", MATERIALIZE, processes)
    live = holder(env)
    run = health_pipeline(env, processes, "run", "--start", DAY, "--end", DAY)
    Lines(run).expect("waiting for the warehouse")
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 130
    assert run.stderr.read().splitlines()[-1] == (
        "stopped by SIGTERM before the run started: nothing was claimed or started")
    assert holder(env).run_id == live.run_id  # the only run, still holding the only slot
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert {step.run_id for step in instance.event_log_storage.get_concurrency_info(POOL).pending_steps} \
            == {live.run_id}
