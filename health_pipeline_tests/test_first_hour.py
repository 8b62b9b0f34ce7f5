"""A new user's first hour: the sample that ends yesterday and can grow, the run's default days,
its progress lines, one instance shared with `dg dev`, per-partition figures, and every known
failure as one line with what to do, without a traceback."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from health_pipeline import DATA_DIR, PROJECT_ROOT
from health_pipeline.definitions import HEALTH_JOB
from health_pipeline.sample import MANIFEST, SAMPLE_DAYS, SampleSpec, extend_sample, generate_sample, sample_spec
from health_pipeline.schedules import DAILY_SCHEDULE
from health_pipeline.scorecard.parser import load_config
from health_pipeline.settings import DEFAULT_CONFIG_PATH, yesterday
from health_pipeline_tests.webserver import (
    ASSETS,
    LOCATION,
    GraphQL,
    daemons_healthy,
    finished,
    free_port,
    live_processes_in_group,
    lower_a_threshold,
    port_open,
    reload_location,
    run_status,
    stale_status,
    stop,
    workspace_loaded,
)

BIN = Path(sys.executable).parent
SPEC = SampleSpec(accounts=6, days=6, seed=5)  # 2026-06-01 .. 06-06


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def env_for(root: Path, **extra) -> dict:
    return {**os.environ, "HEALTH_RAW_DIR": str(root / "raw"), "HEALTH_WAREHOUSE": str(root / "warehouse.duckdb"),
            "HEALTH_EXPORT_DIR": str(root / "exports"), "DAGSTER_HOME": str(root / "dagster_home"), **extra}


def run(root: Path, *args: str, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "health-pipeline"), "run", *args], env=env_for(root, **extra),
                          capture_output=True, text=True, timeout=300)


# --- the sample -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_generate_sample_ends_yesterday_unless_told_and_the_same_end_gives_the_same_bytes(tmp_path):
    command = [str(BIN / "health-pipeline"), "generate-sample", "--accounts", "4", "--days", "3"]
    subprocess.run([*command, "--out", str(tmp_path / "today")], check=True, capture_output=True, timeout=120)
    assert sample_spec(tmp_path / "today") == SampleSpec(accounts=4, days=3, start=yesterday() - dt.timedelta(days=2))
    for copy in ("a", "b"):
        subprocess.run([*command, "--end", "2026-06-03", "--out", str(tmp_path / copy)], check=True,
                       capture_output=True, timeout=120)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "a" / "all_events").iterdir()) == [
        "2026-06-01.parquet", "2026-06-02.parquet", "2026-06-03.parquet"]


def test_a_live_sample_adds_each_missing_day_with_the_same_bytes_whatever_the_order(tmp_path):
    live = SampleSpec(accounts=6, days=5, seed=5, live=True)  # 2026-06-01 .. 06-05
    for copy in ("stepwise", "at_once"):
        generate_sample(tmp_path / copy, live)
    assert extend_sample(tmp_path / "stepwise", dt.date(2026, 6, 6)) == [dt.date(2026, 6, 6)]
    assert extend_sample(tmp_path / "stepwise", dt.date(2026, 6, 8)) == [dt.date(2026, 6, 7), dt.date(2026, 6, 8)]
    assert extend_sample(tmp_path / "at_once", dt.date(2026, 6, 8)) == [dt.date(2026, 6, d) for d in (6, 7, 8)]
    assert extend_sample(tmp_path / "at_once", dt.date(2026, 6, 8)) == []  # nothing is ever rewritten
    assert digests(tmp_path / "stepwise") == digests(tmp_path / "at_once")

    events = pd.read_parquet(tmp_path / "at_once" / "all_events")
    added = events[events["time"] >= pd.Timestamp("2026-06-06")]
    assert len(added) > 0 and set(added["time"].dt.date) == {dt.date(2026, 6, d) for d in (6, 7, 8)}
    window = events[events["time"] < pd.Timestamp("2026-06-06")]
    assert not set(added["event_id"]) & set(window["event_id"])  # ids never collide with the window's


def test_a_fixed_sample_is_never_extended(tmp_path):
    generate_sample(tmp_path / "raw", SPEC)
    before = digests(tmp_path / "raw")
    assert extend_sample(tmp_path / "raw", dt.date(2026, 6, 20)) == []
    assert digests(tmp_path / "raw") == before
    assert json.loads((tmp_path / "raw" / MANIFEST).read_text())["live"] is False


@pytest.mark.slow
def test_a_live_sample_run_past_its_window_generates_the_days_and_scores_them(tmp_path):
    generate_sample(tmp_path / "raw", SampleSpec(accounts=6, days=6, seed=5, live=True))
    result = run(tmp_path, "--start", "2026-06-05", "--end", "2026-06-08")
    assert result.returncode == 0, result.stderr
    assert "live sample: generated 2026-06-07 .. 2026-06-08" in result.stdout
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        days = conn.execute("SELECT DISTINCT snapshot_date FROM export.account_health ORDER BY 1").fetchall()
    assert [d for (d,) in days] == [dt.date(2026, 6, d) for d in (5, 6, 7, 8)]


# --- a run: its days, its progress, its instance, its figures per partition ----------------------

@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("default_run")
    generate_sample(root / "raw", SPEC)
    result = run(root)
    assert result.returncode == 0, result.stderr
    return root, result


@pytest.mark.slow
def test_without_dates_a_run_covers_the_raw_events_days_and_says_so(default_run):
    root, result = default_run
    assert (f"the raw events in {root / 'raw'} cover 2026-06-01 .. 2026-06-06: running 2026-06-01 .. 2026-06-06 "
            "(--start and --end choose other days)") in result.stdout
    assert "materializing every asset for 2026-06-01 .. 2026-06-06 in one run" in result.stdout


@pytest.mark.slow
def test_each_stage_prints_one_line_with_its_rows_and_time_and_no_dagster_log(default_run):
    root, result = default_run
    finished = [line for line in result.stdout.splitlines() if line.startswith("✓ ")]
    steps = [line.split()[1] for line in finished]
    assert steps[0] == "raw_activity" and steps[-2:] == ["morning_report", "postgres_sync"] and len(steps) == 11
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as conn:
        scored = conn.execute("SELECT count(*) FROM core.account_health").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM raw.events").fetchone()[0]
    line = {line.split()[1]: line for line in finished}
    assert f"account_health {scored:,} rows" in line["account_health"]
    assert line["raw_activity"].startswith("✓ raw_activity in ")
    assert f"raw_events {events:,} rows" in line["raw_activity"]
    assert line["postgres_sync"].endswith("skipped, HEALTH_SYNC_POSTGRES_URL is not set: nothing was synced")
    assert "raw_activity … reading raw all_events (6 files)" in result.stdout  # a long stage's progress
    assert " - DEBUG - " not in result.stdout + result.stderr and "Telemetry" not in result.stdout


@pytest.mark.slow
def test_the_run_is_recorded_in_the_instance_with_each_partitions_own_figures(default_run):
    root, _ = default_run
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as conn:
        per_day = dict(conn.execute("SELECT CAST(snapshot_date AS VARCHAR), count(*) FROM core.account_health "
                                    "GROUP BY ALL").fetchall())
        at_risk = dict(conn.execute("SELECT CAST(snapshot_date AS VARCHAR), count(*) FROM core.account_health "
                                    "WHERE health_band = 'at_risk' GROUP BY ALL").fetchall())
    with dg.DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        [record] = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert len(instance.get_materialized_partitions(dg.AssetKey("account_health"))) == 6
        for day in ("2026-06-01", "2026-06-06"):
            [record] = instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("account_health"), asset_partitions=[day]), limit=2).records
            metadata = record.asset_materialization.metadata
            assert metadata["dagster/row_count"].value == per_day[day]
            assert metadata.get("accounts_at_risk", dg.MetadataValue.int(0)).value == at_risk.get(day, 0)
            # The whole run's counts are kept under their own names on the same record.
            assert metadata["rows_in_run"].value == sum(per_day.values())
            assert metadata["accounts_at_risk_in_run"].value == sum(at_risk.values())
            # Dagster's lineage tags, which staleness reads, are on the day's one record.
            tags = record.asset_materialization.tags
            assert tags["dagster/code_version"] == load_config(DEFAULT_CONFIG_PATH).scoring_version
            assert tags["dagster/data_version"]


@pytest.mark.slow
def test_a_run_of_earlier_days_prints_every_row_it_wrote_and_no_earlier_runs_report(tmp_path):
    generate_sample(tmp_path / "raw", SPEC)
    assert run(tmp_path, HEALTH_REPORT_DAYS="6").returncode == 0  # a site for every day
    result = run(tmp_path, "--start", "2026-06-02", "--end", "2026-06-03", HEALTH_REPORT_DAYS="0")
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        # The run's two days and the three later ones it refreshed.
        written = conn.execute("SELECT count(*) FROM core.account_health WHERE snapshot_date >= '2026-06-02'"
                               ).fetchone()[0]
        last_day = conn.execute("SELECT count(*) FROM core.account_health WHERE snapshot_date = '2026-06-06'"
                                ).fetchone()[0]
    assert written > last_day
    [line] = [line for line in result.stdout.splitlines() if line.startswith("✓ account_health ")]
    assert line.endswith(f": account_health {written:,} rows")
    # The first run's site of 06-03 is on disk, but it is not this run's: none is named.
    assert "morning report: none built (HEALTH_REPORT_DAYS=0; `health-pipeline report` builds one)" in result.stdout
    assert "index.html" not in result.stdout


# --- every known failure: one line, what to do, no traceback --------------------------------------

def one_line(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr and "Stack Trace" not in result.stderr
    [line] = result.stderr.splitlines()
    return line


@pytest.mark.slow
def test_a_bad_scorecard_is_one_line_naming_file_field_and_reason(tmp_path):
    generate_sample(tmp_path / "raw", SPEC)
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["segments"][0]["when"] = {"seats": {"gte": 10}}
    (bad := tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    line = one_line(run(tmp_path, HEALTH_CONFIG=str(bad)), 2)
    assert line == (f"{bad}: segments[0].when.seats: unknown account attribute; known: plan, vertical, "
                    "digital_footprint, arr, contacts_total")


@pytest.mark.slow
def test_a_missing_raw_dir_lists_the_tables_it_expects(tmp_path):
    line = one_line(run(tmp_path, HEALTH_RAW_DIR=str(tmp_path / "nowhere")), 2)
    assert line.startswith(f"no raw data in HEALTH_RAW_DIR={tmp_path / 'nowhere'}: expected the tables users, "
                           "accounts, sessions, all_events, user_migrations (optional), outcomes (optional)")


@pytest.mark.slow
def test_a_missing_column_names_the_table_the_file_and_the_column(tmp_path):
    generate_sample(tmp_path / "raw", SPEC)
    users = pd.read_parquet(tmp_path / "raw" / "users.parquet")
    users.drop(columns="joindate").to_parquet(tmp_path / "raw" / "users.parquet")
    line = one_line(run(tmp_path, "--start", "2026-06-01", "--end", "2026-06-02"), 1)
    assert line == (f"raw_activity failed: raw table 'users' ({tmp_path / 'raw' / 'users.parquet'}) lacks required "
                    "column(s) joindate; it has account_id, identity, role, user_id")


@pytest.mark.slow
def test_days_without_events_fail_the_audit_once_naming_the_days_and_what_to_do(tmp_path):
    generate_sample(tmp_path / "raw", SPEC)
    for table in ("all_events", "sessions"):
        (tmp_path / "raw" / table / "2026-06-04.parquet").unlink()
    (tmp_path / "raw" / "all_events" / "2026-06-05.parquet").unlink()
    result = run(tmp_path, "--start", "2026-06-03", "--end", "2026-06-06")
    line = one_line(result, 1)
    assert line.startswith("raw_activity failed: audit failed, nothing published: raw_events and accounts for "
                           "2026-06-01 .. 2026-06-06: activity_every_day (")
    assert "missing_days=2026-06-04 (no events, no sessions), 2026-06-05 (no events)" in line
    assert line.endswith("Re-export the missing days, or, if they have no activity on purpose, list them in "
                         "HEALTH_KNOWN_GAPS")
    assert "✗ raw_activity failed after" in result.stdout and "(check activity_every_day)" in result.stdout


@pytest.mark.slow
def test_a_start_before_the_first_partition_is_refused_in_one_line(tmp_path):
    generate_sample(tmp_path / "raw", SPEC)
    line = one_line(run(tmp_path, "--start", "2026-05-30", "--end", "2026-06-02"), 2)
    assert line == ("--start 2026-05-30 is before the first daily partition, 2026-06-01 (HEALTH_PARTITIONS_START, "
                    "else the raw data's first day)")


@pytest.mark.slow
def test_an_end_after_yesterday_or_after_the_data_is_refused_at_once_in_one_line(tmp_path):
    """Before, `--end 2030-01-01` was refused only by Dagster, minutes later; and an end past the
    data ran days without events into the audit's failure."""
    generate_sample(tmp_path / "raw", SPEC)
    line = one_line(run(tmp_path, "--end", "2030-01-01"), 2)
    assert line == f"--end 2030-01-01 is after yesterday, {yesterday()} (UTC): a day is run once it is over"
    line = one_line(run(tmp_path, "--start", "2026-06-02", "--end", "2026-06-07"), 2)
    assert line == "--end 2026-06-07 is after the raw events' last day, 2026-06-06: there is no data to run after it"
    assert not (tmp_path / "warehouse.duckdb").exists() and not (tmp_path / "dagster_home").exists()


@pytest.mark.slow
def test_a_locked_warehouse_names_the_process_holding_it(tmp_path):
    generate_sample(tmp_path / "raw", SPEC)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; held = duckdb.connect(sys.argv[1]); "
                               "print('holding', flush=True); time.sleep(120)", str(tmp_path / "warehouse.duckdb")],
                              stdout=subprocess.PIPE, text=True)
    # The CLI with 0.3 s of lock retries instead of about 100.
    impatient = ("import sys; from health_pipeline import cli, resources; resources.LOCK_RETRIES = 2; "
                 "sys.exit(cli.main(['run', '--start', '2026-06-01', '--end', '2026-06-02']))")
    try:
        assert holder.stdout.readline().strip() == "holding"
        result = subprocess.run([sys.executable, "-c", impatient], env=env_for(tmp_path), capture_output=True,
                                text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    line = one_line(result, 1)
    assert line.startswith(f"raw_activity failed: the warehouse {tmp_path / 'warehouse.duckdb'} is in use by "
                           f"process {holder.pid} (")
    assert line.endswith("and stayed locked for 0 s: let that process finish, or stop it, then run again")
    assert "waiting for the warehouse, which process" in result.stdout


@pytest.mark.slow
def test_debug_shows_dagsters_log_and_the_traceback(tmp_path):
    generate_sample(tmp_path / "raw", SPEC)
    users = pd.read_parquet(tmp_path / "raw" / "users.parquet")
    users.drop(columns="joindate").to_parquet(tmp_path / "raw" / "users.parquet")
    result = run(tmp_path, "--start", "2026-06-01", "--end", "2026-06-01", "--debug")
    assert result.returncode == 1 and "STEP_FAILURE" in result.stderr
    assert "Stack Trace:" in result.stderr and "raise RawInputError" in result.stderr


# --- a new user's first hour: the quick start, then `dg dev` ---------------------------------------

FRESH_CLONE_SKIPS = shutil.ignore_patterns(".venv", ".git", "data", "test-artifacts", "__pycache__", ".pytest_cache",
                                           ".hypothesis", "*.egg-info")
ASSET_QUERY = """{ assetNodes { assetKey { path } isPartitioned
    partitionStats { numMaterialized numPartitions numFailed }
    assetMaterializations(limit: 1) { runId }
    assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization { status } } } } } }"""


def fresh_clone(root: Path) -> Path:
    """The project's files as a clone has them (no data, no instance history), using this venv."""
    clone = root / "clone"
    shutil.copytree(PROJECT_ROOT, clone, ignore=FRESH_CLONE_SKIPS)
    (clone / "data" / "dagster_home").mkdir(parents=True)
    shutil.copy(DATA_DIR / "README.md", clone / "data" / "README.md")
    shutil.copy(DATA_DIR / "dagster_home" / "dagster.yaml", clone / "data" / "dagster_home" / "dagster.yaml")
    (clone / ".venv").symlink_to(BIN.parent)
    return clone


@contextmanager
def dg_dev(clone: Path, env: dict, logs: Path):
    """The README's UI command, `DAGSTER_HOME=$PWD/data/dagster_home .venv/bin/dg dev`, on a free port."""
    port = free_port()
    env = {**env, "DAGSTER_HOME": str(clone / "data" / "dagster_home")}
    with open(logs / "dg_dev.log", "w") as log:
        process = subprocess.Popen([str(clone / ".venv" / "bin" / "dg"), "dev", "--host", "127.0.0.1", "--port",
                                    str(port)], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        yield GraphQL(port, {"dg dev": process}, logs)
    finally:
        stop(process)
        assert not live_processes_in_group(process.pid), "processes left running"
        assert not port_open(port), f"port {port} still open"


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory) -> tuple[Path, dict]:
    """A fresh clone after the quick start's run, exactly as the README has it (pip install aside),
    and the environment to run its commands in."""
    clone = fresh_clone(tmp_path_factory.mktemp("quick_start"))
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("HEALTH_") and key != "DAGSTER_HOME"}
    env.update(PYTHONPATH=str(clone), PYTHONUNBUFFERED="1")  # the clone's package, not the installed one
    result = subprocess.run([".venv/bin/health-pipeline", "run"], cwd=clone, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    last_day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    first_day = last_day - dt.timedelta(days=SAMPLE_DAYS - 1)
    assert f"materializing every asset for {first_day} .. {last_day} in one run" in result.stdout
    return clone, env


@pytest.mark.slow
def test_the_quick_starts_sample_suggests_a_scorecard_that_loads_and_backtests(quick_start):
    """docs/backtest.md's commands on the quick start's own sample, whatever day it ends: before, its
    outcomes were too few, and too early in its history, for any metric to qualify (exit 2, no file)."""
    clone, env = quick_start
    suggested = subprocess.run([".venv/bin/health-pipeline", "suggest-scorecard", "--out",
                                "data/suggested_scorecard.yaml"], cwd=clone, env=env, capture_output=True, text=True,
                               timeout=600)
    assert suggested.returncode == 0, suggested.stderr
    assert suggested.stdout.startswith("wrote data/suggested_scorecard.yaml: fitted on outcomes before ")
    config = load_config(clone / "data" / "suggested_scorecard.yaml")
    assert config.metrics_version == load_config(DEFAULT_CONFIG_PATH).metrics_version  # drops into place
    assert config.scorecard.components

    trial = subprocess.run([".venv/bin/health-pipeline", "backtest", "--config", "data/suggested_scorecard.yaml"],
                           cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert trial.returncode == 0, trial.stderr
    table = [line.split()[:2] for line in trial.stdout.splitlines() if line.split()[:1] in (["30"], ["60"], ["90"])]
    assert table == [[lead, name] for lead in ("30", "60", "90") for name in ("current", "candidate")]


@pytest.mark.slow
def test_the_quick_start_then_dg_dev_shows_every_asset_materialized_and_the_schedule_works(quick_start, tmp_path):
    clone, env = quick_start
    logs = tmp_path / "logs"
    logs.mkdir()
    last_day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    first_day = last_day - dt.timedelta(days=SAMPLE_DAYS - 1)

    with dg_dev(clone, env, logs) as gql:
        gql.wait_for("the code location to load", lambda: workspace_loaded(gql))
        nodes = gql(ASSET_QUERY)["assetNodes"]
        assert len(nodes) == len(ASSETS)
        for node in nodes:
            name = node["assetKey"]["path"][0]
            if node["isPartitioned"]:  # every day of the sample, and nothing else
                assert node["partitionStats"] == {"numMaterialized": SAMPLE_DAYS, "numPartitions": SAMPLE_DAYS,
                                                  "numFailed": 0}, name
            else:
                assert node["assetMaterializations"], name
        checks = {(node["assetKey"]["path"][0], check["name"]): check["executionForLatestMaterialization"]["status"]
                  for node in nodes for check in node["assetChecksOrError"]["checks"]}
        assert len(checks) >= 12 and set(checks.values()) == {"SUCCEEDED"}, checks
        runs = gql("{ runsOrError { ... on Runs { results { jobName status } } } }")["runsOrError"]["results"]
        assert runs == [{"jobName": HEALTH_JOB, "status": "SUCCESS"}]

        # This morning's tick of the daily schedule, launched as the UI's "Test schedule" does, succeeds.
        gql.wait_for("the daemons", lambda: daemons_healthy(gql))
        this_morning = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(2), tzinfo=dt.UTC)
        tick = gql("""mutation($s: ScheduleSelector!, $t: Float) { scheduleDryRun(selectorData: $s, timestamp: $t) {
            ... on DryRunInstigationTick { evaluationResult {
                runRequests { runConfigYaml tags { key value } } } } } }""",
                   s={**LOCATION, "scheduleName": DAILY_SCHEDULE}, t=this_morning.timestamp())["scheduleDryRun"]
        [request] = tick["evaluationResult"]["runRequests"]
        launched = gql("""mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
            ... on LaunchRunSuccess { run { runId } } } }""",
                       p={"selector": {**LOCATION, "jobName": HEALTH_JOB}, "runConfigData": request["runConfigYaml"],
                          "executionMetadata": {"tags": request["tags"]}, "mode": "default"})["launchRun"]
        run_id = launched["run"]["runId"]
        assert gql.wait_for("the scheduled run", lambda: finished(run_status(gql, run_id))) == "SUCCESS", gql.tail()

        # A scorecard edit marks the scoring assets' partitions stale ("Unsynced"), and nothing else.
        lower_a_threshold(clone / "health_pipeline" / "scorecard" / "default.yaml")
        reload_location(gql)
        scoring = ["account_health", "sync_export", "band_changes"]
        day = str(first_day + dt.timedelta(days=30))
        statuses = gql.wait_for("the new code version", lambda: (
            s := {asset: by_day[day] for asset, by_day in stale_status(
                gql, [*scoring, "contact_metrics", "account_metrics"], [day]).items()})["account_health"] == "STALE"
            and s)
        assert statuses == {**dict.fromkeys(scoring, "STALE"), "contact_metrics": "FRESH", "account_metrics": "FRESH"}
