"""Three runs launched at once against one warehouse: they queue on the warehouse pool, and all succeed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from health_pipeline import DATA_DIR
from health_pipeline.definitions import HEALTH_JOB, defs
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline_tests.conftest import Pipeline, sync_table

FIRST, LAST = "2026-06-01", "2026-06-10"
BIN = Path(sys.executable).parent



@pytest.mark.slow
def test_three_runs_at_once_against_one_warehouse_all_succeed(tmp_path):
    raw = tmp_path / "raw"
    generate_sample(raw, SampleSpec(accounts=8, days=10, seed=4))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DATA_DIR / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    # Dagster creates its SQLite storage on first use, and three processes creating it at once
    # race; a real instance has long been created by `dagster dev`, so create it first.
    dg.DagsterInstance.from_config(str(home)).dispose()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "HEALTH_RAW_DIR": str(raw),
        "HEALTH_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "HEALTH_EXPORT_DIR": str(tmp_path / "exports"),
    }
    # A backfill from the CLI twice, and the health-pipeline command: the same days, three writers.
    materialize = [str(BIN / "dagster"), "asset", "materialize", "-m", "health_pipeline.definitions",
                   "--select", "*", "--partition-range", f"{FIRST}...{LAST}"]
    commands = [materialize, materialize, [str(BIN / "health-pipeline"), "run", "--start", FIRST, "--end", LAST]]
    processes = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for c in commands]
    try:
        outputs = [p.communicate(timeout=600)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        # Every step (stage or check) opens the warehouse, so the pool lets one run's step at a
        # time: a step starts after the other runs' steps have ended. Dagster's SQLite storage can
        # grant one slot to two steps that claim it in the same instant (it checks and takes the
        # slot in separate statements), and then DuckDB's file lock holds back whichever of the two
        # opens the warehouse second, not always the one that started second (Warehouse retries the
        # lock and logs that it waits): an overlap is allowed only when one of the two waited.
        steps, waited = [], set()
        for run in runs:
            started = {}
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None:
                    if "waiting for the warehouse" in entry.user_message:
                        waited.add((run.run_id, entry.step_key))
                elif event.event_type == dg.DagsterEventType.STEP_START:
                    started[entry.step_key] = entry.timestamp
                elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                    steps.append((started.pop(entry.step_key), entry.timestamp, run.run_id, entry.step_key))
        assert len(steps) == 3 * len(defs.resolve_job_def(HEALTH_JOB).graph.nodes)  # every stage and its checks
        steps.sort()
        for before, after in zip(steps, steps[1:], strict=False):
            assert after[0] >= before[1] or after[2:] in waited or before[2:] in waited, (
                f"{after[2:]} started while {before[2:]} was running, and neither waited for the warehouse")

    # The result is what one clean run produces.
    reference = Pipeline(tmp_path / "reference")
    shutil.copytree(raw, reference.raw_dir)
    reference.materialize(FIRST, LAST)
    pd.testing.assert_frame_equal(sync_table(tmp_path / "warehouse.duckdb"),
                                  sync_table(reference.root / "warehouse.duckdb"))
