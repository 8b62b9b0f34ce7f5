"""A run killed with SIGKILL at any point, then re-run, leaves what a clean run leaves.

Each kill lands at a deterministic point: crash_driver stops the real `health-pipeline run`
code there (inside a swap's transaction, between stages, with a sync temp file half-way to
its place) and the test kills it with SIGKILL. The re-run is a plain `health-pipeline run`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from health_pipeline import DATA_DIR
from health_pipeline.publish import replace_date_range, stage
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.settings import yesterday
from health_pipeline_tests.conftest import export_files

SPEC = SampleSpec(accounts=6, days=20, seed=5)
START, END = "2026-06-01", "2026-06-20"
CLI = Path(sys.executable).parent / "health-pipeline"
WITHOUT_INSTANCE = shutil.ignore_patterns("dagster_home")  # a copied root starts with no run history


def env_for(root: Path, **extra) -> dict:
    return {**os.environ, "HEALTH_RAW_DIR": str(root / "raw"), "HEALTH_WAREHOUSE": str(root / "warehouse.duckdb"),
            "HEALTH_EXPORT_DIR": str(root / "exports"), "DAGSTER_HOME": str(root / "dagster_home"), **extra}


def run_cli(root: Path, env: dict | None = None) -> None:
    result = subprocess.run([str(CLI), "run", "--start", START, "--end", END], env=env or env_for(root),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def kill_at(root: Path, point: str, env: dict | None = None, days: list[str] = [START, END]) -> None:
    """Run the pipeline until it reaches `point`, then SIGKILL it there."""
    driver = subprocess.Popen(
        [sys.executable, "-m", "health_pipeline_tests.crash_driver", point, *days],
        env=env or env_for(root), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        for line in driver.stdout:
            if line.startswith("REACHED"):
                break
        else:
            pytest.fail(f"the run finished without reaching {point}")
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL


def state(root: Path) -> dict:
    """Every warehouse table and every file under the export folder (hidden ones too), minus computed_at."""
    out = {}
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as conn:
        tables = conn.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables() ORDER BY 1").fetchall()
        for (table,) in tables:
            if table in ("raw.accepted_snapshots", "raw.history_runs"):
                continue  # logs of the runs that committed raw_activity: a killed run may have added one
            frame = conn.execute(f"SELECT * FROM {table}").df().drop(columns="computed_at", errors="ignore")
            out[table] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return {**out, **export_files(root)}


def assert_same(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for name, frame in expected.items():
        # The raw tables' source paths differ between the two roots; nothing else may.
        if name == "raw.quarantine":
            continue
        if isinstance(frame, bytes):
            assert actual[name] == frame, name
        else:
            pd.testing.assert_frame_equal(actual[name], frame, obj=name)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("clean")
    generate_sample(root / "raw", SPEC)
    run_cli(root)
    return root, state(root)


@pytest.mark.slow
@pytest.mark.parametrize("point", [
    "sql:CREATE OR REPLACE TABLE raw.contacts:1",    # raw_activity, between two snapshot swaps
    "sql:DELETE FROM raw.events:1",                  # raw_activity, inside the events swap
    "sql:INSERT INTO core.contact_metrics BY NAME:1",  # contact_metrics, swap done but not committed
    "sql:COMMIT:5",                                  # between stages, several committed
    "tmp:7",                                         # a sync temp file written, not yet renamed
    "renamed:30",                                    # half of the sync files in place
])
def test_killed_run_then_rerun_equals_a_clean_run(clean, tmp_path, point):
    clean_root, expected = clean
    shutil.copytree(clean_root / "raw", tmp_path / "raw")
    kill_at(tmp_path, point)
    run_cli(tmp_path)
    actual = state(tmp_path)
    assert_same(actual, expected)
    quarantine = "SELECT * EXCLUDE (source_file) FROM raw.quarantine ORDER BY ALL"
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as a, \
            duckdb.connect(str(clean_root / "warehouse.duckdb"), read_only=True) as b:
        pd.testing.assert_frame_equal(a.execute(quarantine).df(), b.execute(quarantine).df())


@pytest.mark.slow
def test_a_run_killed_inside_a_swap_leaves_the_previous_rows_whole(clean, tmp_path):
    """Killed after deleting a range and before committing: the range still holds the last run's rows."""
    clean_root, expected = clean
    shutil.copytree(clean_root, tmp_path, dirs_exist_ok=True, ignore=WITHOUT_INSTANCE)
    kill_at(tmp_path, "sql:DELETE FROM export.account_health:1")
    assert_same(state(tmp_path), expected)


@pytest.mark.slow
def test_killed_run_leaves_a_temp_file_that_the_next_run_removes(clean, tmp_path):
    shutil.copytree(clean[0] / "raw", tmp_path / "raw")
    kill_at(tmp_path, "tmp:3")
    # One per writing thread at most: the files are written in parallel (export_files.write_snapshot_files).
    assert 1 <= len(list((tmp_path / "exports").rglob(".snapshot_date=*.tmp"))) <= (os.cpu_count() or 1)
    run_cli(tmp_path)
    assert list((tmp_path / "exports").rglob(".*")) == []


@pytest.mark.slow
def test_killed_sample_generation_leaves_no_half_sample(clean, tmp_path):
    """With no raw data, `health-pipeline run` generates the sample; killed half-way, it starts over."""
    sample_dir = tmp_path / "raw"
    env = env_for(tmp_path, HEALTH_SAMPLE_DIR=str(sample_dir))
    env.pop("HEALTH_RAW_DIR")
    expected = SampleSpec.ending(yesterday(), live=True)  # what the CLI generates
    last_days = [str(expected.end - dt.timedelta(days=19)), str(expected.end)]
    kill_at(tmp_path, "sample:10", env, last_days)
    assert not sample_dir.exists()
    driver = subprocess.run([sys.executable, "-m", "health_pipeline_tests.crash_driver", "none", *last_days],
                            env=env, capture_output=True, text=True, timeout=600)
    assert driver.returncode == 0, driver.stderr[-3000:]
    # The default sample is larger than SPEC, so compare it with itself generated cleanly.
    generate_sample(tmp_path / "expected", expected)
    for path in sorted((tmp_path / "expected").rglob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(sample_dir / path.relative_to(tmp_path / "expected")),
                                      pd.read_parquet(path))


def test_a_reader_never_sees_a_partition_half_replaced(tmp_path):
    """At every statement of a swap, another connection sees the old rows or the new, whole."""
    writer = duckdb.connect(str(tmp_path / "w.duckdb"))
    reader = writer.cursor()  # a second connection to the same database
    writer.execute("CREATE SCHEMA core")
    day = dt.date(2026, 6, 2)
    writer.execute("CREATE TABLE core.t AS SELECT d::DATE AS d, i FROM "
                   "(VALUES ('2026-06-01'), ('2026-06-02')) v(d), range(100) r(i)")
    staging = stage(writer, "t", "SELECT DATE '2026-06-02' AS d, i + 1000 AS i FROM range(150) r(i)")

    seen = []

    class Watched:
        def execute(self, sql, *args):
            result = writer.execute(sql, *args)
            seen.append(reader.execute("SELECT d, count(*), min(i) FROM core.t GROUP BY d ORDER BY d").fetchall())
            return result

        def __getattr__(self, name):
            return getattr(writer, name)

    replace_date_range(Watched(), "core.t", "d", day, day, staging)
    old = [(dt.date(2026, 6, 1), 100, 0), (day, 100, 0)]
    new = [(dt.date(2026, 6, 1), 100, 0), (day, 150, 1000)]
    assert len(seen) >= 5 and set(map(tuple, seen)) == {tuple(old), tuple(new)}
    assert seen[-1] == new


# --- recovery with a persistent instance (DAGSTER_HOME), as docs/operations.md advises -------------------

def home_for(root: Path) -> Path:
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA_DIR / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.mark.slow
def test_a_run_killed_with_sigkill_is_recovered_by_the_next_run_within_bounded_time(clean, tmp_path):
    """SIGKILL inside a step that holds the warehouse slot: the next run ends the dead run, frees
    its slot, and finishes; before, it waited for the dead run forever."""
    clean_root, expected = clean
    shutil.copytree(clean_root / "raw", tmp_path / "raw")
    env = env_for(tmp_path, DAGSTER_HOME=str(home_for(tmp_path)))
    kill_at(tmp_path, "sql:DELETE FROM raw.events:1", env)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [dead] = instance.get_runs()
        assert dead.status == dg.DagsterRunStatus.STARTED
        assert instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots
    started = time.monotonic()
    result = subprocess.run([str(CLI), "run", "--start", START, "--end", END], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - started < 240
    assert f"run {dead.run_id}: marked failed (its process" in result.stdout
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        statuses = {r.run_id: r.status for r in instance.get_runs()}
        assert statuses.pop(dead.run_id) == dg.DagsterRunStatus.FAILURE
        assert list(statuses.values()) == [dg.DagsterRunStatus.SUCCESS]
        assert instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots == []
    assert_same(state(tmp_path), expected)


@pytest.mark.slow
def test_sigterm_stops_a_run_cleanly_and_frees_its_slot(clean, tmp_path):
    """SIGTERM while a step holds an open transaction: the process stops within seconds, the run
    is marked failed with its slot freed, and the warehouse is as before the run."""
    clean_root, expected = clean
    shutil.copytree(clean_root, tmp_path, dirs_exist_ok=True, ignore=WITHOUT_INSTANCE)
    env = env_for(tmp_path, DAGSTER_HOME=str(home_for(tmp_path)))
    driver = subprocess.Popen([sys.executable, "-m", "health_pipeline_tests.crash_driver",
                               "sql:DELETE FROM export.account_health:1", START, END],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in driver.stdout:
            if line.startswith("REACHED"):
                break
        driver.send_signal(signal.SIGTERM)
        _, stderr = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 128 + signal.SIGINT  # Dagster handles SIGTERM as an interrupt
    assert "stopped by SIGINT or SIGTERM: run " in stderr and "marked failed, its warehouse slot freed" in stderr
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert [r.status for r in instance.get_runs()] == [dg.DagsterRunStatus.FAILURE]
        assert instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots == []
    assert_same(state(tmp_path), expected)


# An instance that does not capture step output: a step's lines go straight to the CLI's stdout,
# not through the `tail` process Dagster otherwise mirrors them with.
UNCAPTURED = """
compute_logs:
  module: dagster._core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
"""


@pytest.mark.slow
@pytest.mark.parametrize("step_output", ["captured", "uncaptured"])
def test_a_closed_stdout_ends_the_cli_quietly_after_the_run_completes(clean, tmp_path, step_output):
    """`health-pipeline run | head`: the reader goes away while raw_activity runs. The run goes on to
    a clean finish, and the CLI exits as a command SIGPIPE killed (141) with nothing on stderr;
    before, print_summary's BrokenPipeError was a traceback (exit 1), and without captured step
    output the step's progress line failed raw_activity and left its warehouse slot held."""
    clean_root, expected = clean
    shutil.copytree(clean_root / "raw", tmp_path / "raw")
    home = home_for(tmp_path)
    if step_output == "uncaptured":
        with open(home / "dagster.yaml", "a") as config:
            config.write(UNCAPTURED)
    with open(tmp_path / "stderr.txt", "w") as stderr:
        cli = subprocess.Popen([str(CLI), "run", "--start", START, "--end", END], env=env_for(tmp_path),
                               stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            for line in cli.stdout:
                if line.startswith("raw_activity"):
                    break
            cli.stdout.close()  # as `head` does once it has its lines
            assert cli.wait(timeout=300) == 128 + signal.SIGPIPE
        finally:
            cli.kill()
    assert (tmp_path / "stderr.txt").read_text() == ""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert [r.status for r in instance.get_runs()] == [dg.DagsterRunStatus.SUCCESS]
        assert instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots == []
    assert_same(state(tmp_path), expected)


@pytest.mark.slow
def test_recover_ends_a_dead_run_and_checks_the_warehouse(clean, tmp_path):
    clean_root, _ = clean
    shutil.copytree(clean_root / "raw", tmp_path / "raw")
    env = env_for(tmp_path, DAGSTER_HOME=str(home_for(tmp_path)))
    kill_at(tmp_path, "sql:DELETE FROM raw.events:1", env)
    result = subprocess.run([str(CLI), "recover"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run ") and lines[0].endswith("its warehouse pool slots freed")
    assert lines[1].startswith(f"warehouse {tmp_path / 'warehouse.duckdb'}: opens cleanly")
    again = subprocess.run([str(CLI), "recover"], env=env, capture_output=True, text=True, timeout=120)
    assert again.stdout.splitlines()[0] == "no unfinished run of a dead process"


@pytest.mark.slow
def test_creating_the_instance_is_safe_when_several_runs_start_at_once(tmp_path):
    """Three processes open a fresh DAGSTER_HOME at once; before, the first migration raced
    ("table runs already exists")."""
    home = home_for(tmp_path)
    code = ("from health_pipeline.recovery import open_instance\n"
            "with open_instance() as instance:\n    print(len(instance.get_runs()))")
    processes = [subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "DAGSTER_HOME": str(home)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["0", "0", "0"]
