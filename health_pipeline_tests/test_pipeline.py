"""The chain up to the exports on generated sample data, the loaded definitions, and the CLI entry points."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from health_pipeline import DATA_DIR, PROJECT_ROOT
from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.assets.score_backtest.asset import BACKTEST_ASSETS
from health_pipeline.contract import sync_table_columns
from health_pipeline.definitions import HEALTH_JOB, defs
from health_pipeline.sample import SampleSpec, _accounts, generate_sample
from health_pipeline.scorecard.parser import load_config
from health_pipeline.scorecard.reference import assess
from health_pipeline.settings import DEFAULT_CONFIG_PATH
from health_pipeline_tests.conftest import UP_TO_THE_EXPORTS, Pipeline

BIN = Path(sys.executable).parent

SPEC = SampleSpec(accounts=12, days=60, seed=11)
FIRST, LAST = "2026-06-01", "2026-07-30"
DAILY_ASSETS = [*RAW_ACTIVITY_ASSETS, "contact_metrics", "account_metrics",
                "account_health", "sync_export", "contact_usage", "band_changes", "alerts", "morning_report",
                "postgres_sync"]
ASSETS = [*DAILY_ASSETS, *BACKTEST_ASSETS]


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> Pipeline:
    pipeline = Pipeline(tmp_path_factory.mktemp("sample"))
    generate_sample(pipeline.raw_dir, SPEC)
    # Its tests read up to the exports; test_morning_report's module run builds the whole chain.
    pipeline.materialize(FIRST, LAST, selection=UP_TO_THE_EXPORTS)
    return pipeline


def customer_days(raw_dir: Path, first: str = FIRST, last: str = LAST) -> set[tuple[str, str]]:
    """(account, day) for every day of the run on which the sample's account was a customer:
    customer_since on or before it, and its churn date (churned_at or a churned outcome) after it."""
    accounts = pd.read_parquet(raw_dir / "accounts.parquet")
    outcomes = pd.read_parquet(raw_dir / "outcomes.parquet")
    churned = outcomes[outcomes["outcome"] == "churned"].groupby("account_id")["outcome_date"].min()
    days = pd.date_range(first, last).date
    expected = set()
    for row in accounts.itertuples():
        churn = min(d for d in (row.churned_at, churned.get(row.account_id)) if not pd.isna(d)) \
            if not (pd.isna(row.churned_at) and row.account_id not in churned) else None
        if churn is None and row.status == "churned":
            continue
        expected |= {(row.account_id, str(day)) for day in days
                     if row.customer_since <= day and (churn is None or day < churn)}
    return expected


def test_every_customer_account_has_one_row_per_day_it_was_a_customer(sample_run: Pipeline):
    expected = customer_days(sample_run.raw_dir)
    export = sample_run.query("SELECT account_id, CAST(snapshot_date AS VARCHAR) AS day FROM export.account_health")
    assert not export.duplicated().any()
    assert set(export.itertuples(index=False, name=None)) == expected
    # The sample has accounts that became customers, and accounts that churned, inside the run.
    per_account = export.groupby("account_id").size()
    assert (per_account < 60).sum() >= 2 and (per_account == 60).sum() >= 5
    files = sorted((sample_run.export_dir / "account_health").glob("*.parquet"))
    assert len(files) == 60 and files[0].name == f"snapshot_date={FIRST}.parquet"
    assert len(pd.read_parquet(files[-1])) == sum(day == LAST for _, day in expected)
    assert len(pd.read_parquet(files[0])) == sum(day == FIRST for _, day in expected)


def test_sync_table_carries_the_documented_columns(sample_run: Pipeline):
    columns = list(sample_run.query("SELECT * FROM export.account_health LIMIT 0").columns)
    settings = load_config()
    expected = sync_table_columns(settings)
    assert columns == expected


def test_exported_rows_match_the_reference(sample_run: Pipeline):
    """Segment, score, band, activation and top drag agree with the reference scorer on every row."""
    settings = load_config()
    export = sample_run.query("SELECT * FROM export.account_health")
    checked = ["segment", "health_score", "health_band", "band_source", "in_onboarding", "activation_status",
               "top_drag", "missing_components", "scorecard_version"]
    for row in export.to_dict("records"):
        account = {k: (None if pd.isna(v) else v) for k, v in row.items()}
        account["days_as_customer"] = (row["snapshot_date"] - row["customer_since"]).days
        for metric in settings.account_metrics:
            account[metric] = None if account[metric] is None else float(account[metric])
        expected = assess(settings, account)
        assert {k: account[k] for k in checked} == pytest.approx(expected), (row["account_id"], row["snapshot_date"])
    assert export["health_score"].between(0, 100).all()
    assert set(export["health_band"]) <= {"healthy", "neutral", "at_risk"}
    # The sample exercises every segment and both band sources.
    assert set(export["segment"]) == {s.name for s in settings.segments}
    assert set(export["band_source"]) == {"score", "activation"}


def test_declining_accounts_slide_from_healthy_to_at_risk(sample_run: Pipeline):
    accounts = _accounts(np.random.default_rng(SPEC.seed), SPEC)
    declining = list(accounts.loc[accounts["archetype"] == "declining", "account_id"])
    moves = sample_run.query(
        "SELECT account_id, snapshot_date, from_band, to_band FROM export.band_changes ORDER BY ALL"
    )
    slid = []
    for account_id, path in moves.groupby("account_id"):
        steps = list(zip(path["from_band"], path["to_band"]))
        if ("healthy", "neutral") in steps and ("neutral", "at_risk") in steps[steps.index(("healthy", "neutral")):]:
            slid.append(account_id)
    assert slid and set(slid) <= set(declining) | set(accounts.loc[accounts["archetype"] == "churning", "account_id"])
    # Every listed move is a real change from the previous day's band.
    assert (moves["from_band"] != moves["to_band"]).all()


def test_rollup_equals_the_sum_of_its_contacts(sample_run: Pipeline):
    check = sample_run.query("""
        SELECT a.account_id, a.snapshot_date, a.usage_28d, a.contacts_total,
               coalesce(sum(c.usage_28d), 0) AS contact_usage, count(c.user_id) AS contacts
        FROM export.account_health a
        LEFT JOIN export.contact_usage c ON c.account_id = a.account_id AND c.snapshot_date = a.snapshot_date
        GROUP BY ALL
    """)
    assert (check["usage_28d"] == check["contact_usage"]).all()
    assert (check["contacts_total"] == check["contacts"]).all()


def test_daily_fact_matches_the_deduplicated_raw_events(sample_run: Pipeline):
    totals = sample_run.query("""
        SELECT (SELECT sum(events) FROM core.daily_contact_activity) AS fact_events,
               (SELECT count(*) FROM raw.events) AS raw_events,
               (SELECT count(DISTINCT event_id) FROM raw.events) AS distinct_events
    """).iloc[0]
    assert totals["fact_events"] == totals["raw_events"] == totals["distinct_events"]


def test_definitions_show_partitioned_single_run_stages():
    assets = {key.to_user_string(): a for a in defs.assets for key in a.keys}
    assert sorted(assets) == sorted(ASSETS)
    # One partitioning and one policy for every asset, the backtest too (it covers all of history,
    # every run): Dagster puts a backfill's assets into one run only when both are the same.
    partitions = {assets[name].partitions_def for name in ASSETS}
    assert len(partitions) == 1 and isinstance(partitions.pop(), dg.DailyPartitionsDefinition)
    for name, asset in assets.items():
        assert asset.backfill_policy == dg.BackfillPolicy.single_run(), name
        assert asset.descriptions_by_key[dg.AssetKey(name)], name
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("sync_export")).parent_keys == {
        dg.AssetKey("account_health"), dg.AssetKey("account_metrics"), dg.AssetKey("account_history"),
        dg.AssetKey("outcomes")}
    # Lineage shows every reader of the point-in-time history and the outcomes.
    children = {key: {k.to_user_string() for k in graph.get(dg.AssetKey(key)).child_keys}
                for key in ("account_history", "contact_history", "outcomes")}
    assert children["account_history"] == {"account_metrics", "account_health", "sync_export", "band_changes",
                                            "contact_usage", *BACKTEST_ASSETS}
    assert children["contact_history"] == {"contact_metrics", "account_metrics", "morning_report", "alerts"}
    # The morning report reads the published exports and the backtest, so it runs after all of them.
    assert {k.to_user_string() for k in graph.get(dg.AssetKey("morning_report")).parent_keys} == {
        "sync_export", "contact_usage", "band_changes", "contact_history", *BACKTEST_ASSETS}
    assert children["outcomes"] == children["account_history"]
    job = defs.resolve_job_def(HEALTH_JOB)
    assert {k.to_user_string() for k in job.asset_layer.asset_graph.get_all_asset_keys()} >= set(ASSETS)


def test_generator_is_deterministic_and_realistic(tmp_path):
    spec = SampleSpec(accounts=10, days=5, seed=3)
    generate_sample(tmp_path / "a", spec)
    generate_sample(tmp_path / "b", spec)

    def digest(root: Path) -> str:
        frames = [pd.read_parquet(p) for p in sorted(root.rglob("*.parquet"))]
        return hashlib.sha256(b"".join(pd.util.hash_pandas_object(f).values.tobytes() for f in frames)).hexdigest()

    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    events = pd.read_parquet(tmp_path / "a" / "all_events")
    assert events["event_id"].duplicated().any()  # Heap-style repeats
    assert {"run_query", "save_report", "group_by"} <= set(events["event_table_name"])
    users = pd.read_parquet(tmp_path / "a" / "users.parquet")
    assert users["identity"].isna().any() and users["identity"].str.contains("@garbage", na=False).any()
    assert users["role"].notna().any()
    assert len(pd.read_parquet(tmp_path / "a" / "user_migrations.parquet")) > 0


@pytest.mark.slow
def test_dg_launch_of_a_partition_range_exports_its_days(tmp_path):
    """`dg launch --assets '*' --partition-range` over a slice of the sample exports its days."""
    generate_sample(tmp_path / "raw", SampleSpec(accounts=6, days=10, seed=5))
    env = {
        **os.environ,
        "HEALTH_RAW_DIR": str(tmp_path / "raw"),
        "HEALTH_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "HEALTH_EXPORT_DIR": str(tmp_path / "exports"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    (tmp_path / "dagster_home").mkdir()
    shutil.copy(DATA_DIR / "dagster_home" / "dagster.yaml", tmp_path / "dagster_home" / "dagster.yaml")
    launched = subprocess.run([str(BIN / "dg"), "launch", "--assets", "*",
                               "--partition-range", "2026-06-04...2026-06-06"],
                              cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    output = launched.stdout + launched.stderr
    assert "superseded" not in output and " - DEBUG - " not in output  # the instance logs at INFO
    days = sorted(p.name for p in (tmp_path / "exports" / "account_health").glob("*.csv"))
    assert days == [f"snapshot_date=2026-06-0{d}.csv" for d in (4, 5, 6)]
    exported = pd.read_csv(tmp_path / "exports" / "account_health" / days[0])
    assert len(exported) == sum(day == "2026-06-04" for _, day in customer_days(tmp_path / "raw", "2026-06-04"))
    assert (tmp_path / "exports" / "backtest" / "backtest_summary.csv").exists()


def _validate(env_overrides: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dg"), "check", "defs"], cwd=PROJECT_ROOT, env={**os.environ, **env_overrides},
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_dg_check_defs_passes_without_a_superseded_warning():
    result = _validate({})
    assert result.returncode == 0, result.stderr
    assert "All definitions loaded successfully." in result.stdout
    output = result.stdout + result.stderr
    # dg lists every installed package's scaffolders; one in preview (dagster-pyspark's, with the spark
    # extra) warns about itself, not about these definitions.
    warnings = [line for line in output.splitlines() if "Warning" in line and "Scaffolder`" not in line]
    assert "superseded" not in output and not warnings, warnings


@pytest.mark.slow
def test_bad_config_fails_at_definitions_load(tmp_path):
    bad = tmp_path / "bad.yaml"
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["segments"][0]["when"] = {"seats": {"gte": 10}}
    bad.write_text(yaml.safe_dump(raw))
    result = _validate({"HEALTH_CONFIG": str(bad)})
    assert result.returncode != 0
    # The README's walk-through quotes this: the scorecard's own error class, then its line.
    assert (f"health_pipeline.scorecard.parser.ConfigError: {bad}: segments[0].when.seats: unknown account "
            "attribute") in result.stdout + result.stderr


@pytest.mark.slow
def test_health_pipeline_run_prints_sync_table_and_top_risks(tmp_path):
    generate_sample(tmp_path / "raw", SampleSpec(accounts=12, days=10, seed=5))
    env = {**os.environ, "HEALTH_RAW_DIR": str(tmp_path / "raw"), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
           "HEALTH_WAREHOUSE": str(tmp_path / "w.duckdb"), "HEALTH_EXPORT_DIR": str(tmp_path / "out")}
    cli = BIN / "health-pipeline"
    result = subprocess.run([str(cli), "run", "--start", "2026-06-01", "--end", "2026-06-10"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"export.account_health in {tmp_path / 'w.duckdb'}" in result.stdout
    assert f"{tmp_path / 'out' / 'account_health'}/snapshot_date=" in result.stdout
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        day = conn.execute("SELECT account_id, band_source, health_band, in_onboarding, activation_status, "
                           "health_score, arr FROM export.account_health WHERE snapshot_date = '2026-06-10'"
                           ).df().to_dict("records")
    at_risk = sorted((r for r in day if r["band_source"] == "score" and r["health_band"] == "at_risk"),
                     key=lambda r: (r["health_score"], -r["arr"], r["account_id"]))
    red = sorted((r for r in day if r["in_onboarding"] and r["activation_status"] == "red"),
                 key=lambda r: (-r["arr"], r["account_id"]))

    assert at_risk or red, "the sample has accounts at risk"

    def printed(heading: str) -> list[str]:
        lines = result.stdout.split(heading)[1].split("\n\n")[0].splitlines()
        return [line.split()[0] for line in lines[2:]]  # after the heading's end and the column names

    arr = sum(r["arr"] for r in at_risk)
    assert printed(f"{len(at_risk)} accounts at risk by their health score on 2026-06-10 (ARR {arr:,.0f}") == [
        r["account_id"] for r in at_risk[:10]]
    assert printed(f"{len(red)} onboarding accounts whose activation is red on 2026-06-10, counted apart from "
                   "health") == [r["account_id"] for r in red[:10]]
    assert "changed band on 2026-06-10" in result.stdout


@pytest.mark.slow
def test_an_empty_raw_dir_is_one_line_that_lists_the_expected_tables(tmp_path):
    (tmp_path / "raw").mkdir()
    env = {**os.environ, "HEALTH_RAW_DIR": str(tmp_path / "raw"), "HEALTH_WAREHOUSE": str(tmp_path / "w.duckdb")}
    result = subprocess.run([str(BIN / "health-pipeline"), "run"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"no raw data in HEALTH_RAW_DIR={tmp_path / 'raw'}: expected the tables users, accounts, sessions, "
        "all_events, user_migrations (optional), outcomes (optional), csm_pulse (optional), tickets (optional), "
        "nps_responses (optional), invoices (optional), each as <name>.parquet, <name>.csv or a "
        "folder <name>/ or <name>.parquet/ of parquet files (docs/sources.md: Pointing it at real data)"]
