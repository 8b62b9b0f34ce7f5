"""The backtest in the pipeline: what the score said L days before each outcome, and nothing later.

The figures themselves are checked by hand in test_backtest_statistics.py; here, that the asset
pairs each outcome with the right day, that no row from on or after an outcome's date can
change its prediction, that the planted signal of the sample is found (and the planted
non-signal is not), and that a candidate scorecard is tried without touching production.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from health_pipeline.assets.score_backtest.asset import BACKTEST_ASSETS
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.scorecard.parser import load_config
from health_pipeline.settings import DEFAULT_CONFIG_PATH
from health_pipeline_tests.conftest import Pipeline, export_files
from health_pipeline_tests.test_history import FIRST, LAST, account, portfolio

LEADS = "2,4"


def outcome(aid: str, day: str, kind: str) -> dict:
    return dict(account_id=aid, outcome_date=day, outcome=kind, arr_before=1000.0, arr_after=0.0, reason=None)


def backtest_tables(pipeline: Pipeline) -> dict[str, pd.DataFrame]:
    return {name: pipeline.query(f"SELECT * FROM export.{name} ORDER BY ALL") for name in BACKTEST_ASSETS}


@pytest.fixture
def crafted(tmp_path, monkeypatch) -> Pipeline:
    """Three accounts with one outcome each inside ten days of activity, backtested 2 and 4 days ahead."""
    monkeypatch.setenv("HEALTH_BACKTEST_LEAD_DAYS", LEADS)
    pipeline = Pipeline(tmp_path)
    accounts = [account("A1"), account("A2", owner="Ben"), account("A3", owner="Cy")]
    data = portfolio(accounts, outcomes=[outcome("A1", "2026-06-08", "renewed"), outcome("A2", "2026-06-09", "churned"),
                                         outcome("A3", "2026-06-10", "expanded")])
    data.users.append(dict(user_id="u3", identity="u3@a3.com", joindate="2026-01-01", account_id="A3", role="admin"))
    data.write(pipeline.raw_dir)
    pipeline.materialize(FIRST, LAST)
    return pipeline


@pytest.mark.slow
def test_each_outcome_is_paired_with_the_score_lead_days_before_it(crafted):
    from health_pipeline.assets.score_backtest.asset import backtest_pairs

    with duckdb.connect(str(crafted.root / "warehouse.duckdb"), read_only=True) as conn:
        pairs = backtest_pairs(conn, load_config(), (2, 4))
        scores = conn.execute("SELECT account_id, snapshot_date, health_score FROM core.account_health").df()
    assert sorted(zip(pairs["account_id"], pairs["lead_days"], pairs["scored_on"].astype(str))) == [
        ("A1", 2, "2026-06-06"), ("A1", 4, "2026-06-04"), ("A2", 2, "2026-06-07"), ("A2", 4, "2026-06-05"),
        ("A3", 2, "2026-06-08"), ("A3", 4, "2026-06-06")]
    assert (pairs["scored_on"] < pairs["outcome_date"]).all()
    scores["snapshot_date"] = scores["snapshot_date"].dt.date
    merged = pairs.merge(scores, left_on=["account_id", "scored_on"], right_on=["account_id", "snapshot_date"])
    assert merged["health_score_x"].tolist() == merged["health_score_y"].tolist() and len(merged) == 6
    summary = crafted.query("SELECT lead_days, n_outcomes, n_churned, n_retained FROM export.backtest_summary "
                            "ORDER BY lead_days")
    assert summary.values.tolist() == [[2, 3, 1, 2], [4, 3, 1, 2]]


@pytest.mark.slow
def test_nothing_from_on_or_after_an_outcomes_date_enters_its_prediction(crafted):
    """Scramble every score and metric of each account from its outcome's date on: the backtest
    does not move. Scrambling the day it reads does move it, so the test can fail."""
    before = backtest_tables(crafted)
    scramble = """
        UPDATE {table} t SET {assignments}
        FROM raw.outcomes o WHERE t.account_id = o.account_id AND t.snapshot_date {op} o.outcome_date{offset}"""
    health = "health_score = 100 - coalesce(health_score, 0), health_band = 'at_risk', top_drag = 'usage_level'"
    metrics = "usage_28d = usage_28d * 1000 + 7, breadth_28d = 0.01, usage_change_pct = -0.99"
    with duckdb.connect(str(crafted.root / "warehouse.duckdb")) as conn:
        for table, assignments in (("core.account_health", health), ("core.account_metrics", metrics)):
            conn.execute(scramble.format(table=table, assignments=assignments, op=">=", offset=""))
    result = crafted.materialize(FIRST, LAST, selection=list(BACKTEST_ASSETS))
    assert summary_metadata(result)["recomputed"] is False  # the pairs it reads did not change at all
    for name, frame in backtest_tables(crafted).items():
        pd.testing.assert_frame_equal(frame, before[name], obj=name)

    with duckdb.connect(str(crafted.root / "warehouse.duckdb")) as conn:
        conn.execute(scramble.format(table="core.account_health", assignments=health, op="=", offset=" - 2"))
    crafted.materialize(FIRST, LAST, selection=list(BACKTEST_ASSETS))
    assert not backtest_tables(crafted)["backtest_bands"].equals(before["backtest_bands"])


def summary_metadata(result) -> dict:
    """What the run found, on its last day's record of backtest_summary."""
    last = max((e for e in result.get_asset_materialization_events()
                if e.asset_key.to_user_string() == "backtest_summary"), key=lambda e: e.partition)
    return {k: v.value for k, v in last.materialization.metadata.items()}


@pytest.mark.slow
def test_unchanged_inputs_skip_the_bootstrap_and_a_new_outcome_recomputes_it(crafted):
    before = backtest_tables(crafted)
    plot = crafted.export_dir / "backtest" / "churn_rate_by_band.png"
    written = plot.stat().st_mtime_ns
    rerun = crafted.materialize(FIRST, LAST)  # the whole chain again: the same scores, the same outcomes
    assert summary_metadata(rerun)["recomputed"] is False and "inputs_unchanged_since" in summary_metadata(rerun)
    assert plot.stat().st_mtime_ns == written
    for name, frame in backtest_tables(crafted).items():
        pd.testing.assert_frame_equal(frame, before[name], obj=name)

    accounts = [account("A1"), account("A2", owner="Ben"), account("A3", owner="Cy")]
    data = portfolio(accounts, outcomes=[outcome("A1", "2026-06-08", "renewed"), outcome("A2", "2026-06-09", "churned"),
                                         outcome("A3", "2026-06-10", "churned")])
    data.users.append(dict(user_id="u3", identity="u3@a3.com", joindate="2026-01-01", account_id="A3", role="admin"))
    data.write(crafted.raw_dir)
    changed = crafted.materialize(FIRST, LAST)
    assert summary_metadata(changed)["recomputed"] is True
    summary = crafted.query("SELECT lead_days, n_churned FROM export.backtest_summary ORDER BY lead_days")
    assert summary.values.tolist() == [[2, 2], [4, 2]]
    # A deleted file is written again, even though nothing changed.
    plot.unlink()
    assert summary_metadata(crafted.materialize(FIRST, LAST))["recomputed"] is True and plot.exists()


def test_without_outcomes_the_backtest_is_empty_and_says_how_to_add_them(tmp_path):
    pipeline = Pipeline(tmp_path)
    portfolio().write(pipeline.raw_dir)
    result = pipeline.materialize(FIRST, dt.date(2026, 6, 3))
    assert all(pipeline.row_count(result, name) == 0 for name in BACKTEST_ASSETS)
    assert "Add an `outcomes` export" in summary_metadata(result)["summary"]
    assert not (pipeline.export_dir / "backtest" / "churn_rate_by_band.png").exists()


# --- the sample's planted answer -----------------------------------------------------------------

PLANTED = SampleSpec(accounts=160, days=150, seed=21)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Pipeline:
    pipeline = Pipeline(tmp_path_factory.mktemp("planted"))
    generate_sample(pipeline.raw_dir, PLANTED)
    pipeline.materialize(PLANTED.start, PLANTED.start + dt.timedelta(days=PLANTED.days - 1))
    return pipeline


def power(pipeline: Pipeline, lead: int) -> pd.DataFrame:
    return pipeline.query("SELECT * FROM export.backtest_metric_power WHERE lead_days = ?", [lead]).set_index(
        "measure")


@pytest.mark.slow
def test_the_planted_signal_is_found_and_the_planted_non_signal_is_not(planted):
    """The sample's churn follows a decline in usage and breadth; seats (contacts_total) carry none."""
    at_30 = power(planted, 30)
    for signal in ("usage_change_pct", "active_users_change_pct"):
        assert at_30.loc[signal, "auc_ci_low"] > 0.5, at_30.loc[signal]
        assert at_30.loc[signal, "direction"] == "lower_values_churn"
    seats = at_30.loc["contacts_total"]
    assert seats["auc_ci_low"] < 0.5 < seats["auc_ci_high"], seats
    summary = planted.query("SELECT * FROM export.backtest_summary WHERE lead_days = 30").iloc[0]
    assert summary["auc_ci_low"] > 0.5 and summary["n_churned"] >= 20


@pytest.mark.slow
def test_the_crms_planted_signals_are_found_and_its_noise_is_not(planted):
    """Red pulses and overdue invoices come before the sample's churns; its tickets carry nothing."""
    at_30 = power(planted, 30)
    for signal, direction in (("pulse_score", "lower_values_churn"), ("days_overdue", "higher_values_churn"),
                              ("overdue_amount", "higher_values_churn")):
        assert at_30.loc[signal, "auc_ci_low"] > 0.5, at_30.loc[signal]
        assert at_30.loc[signal, "direction"] == direction
    tickets = at_30.loc["tickets_opened_28d"]
    assert tickets["auc_ci_low"] < 0.5 < tickets["auc_ci_high"], tickets


def _cli(*args: str, root: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HEALTH_WAREHOUSE": str(root / "warehouse.duckdb"),
           "HEALTH_EXPORT_DIR": str(root / "exports"), "HEALTH_RAW_DIR": str(root / "raw"), **(env or {})}
    return subprocess.run([str(Path(sys.executable).parent / "health-pipeline"), *args], env=env,
                          capture_output=True, text=True, timeout=600)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_suggested_scorecard_is_fitted_on_older_outcomes_and_tried_without_touching_production(planted):
    warehouse, exports = planted.root / "warehouse.duckdb", export_files(planted.root)
    before = _digest(warehouse)
    suggested = planted.root / "suggested.yaml"
    fit = _cli("suggest-scorecard", "--out", str(suggested), root=planted.root)
    assert fit.returncode == 0, fit.stderr
    text = suggested.read_text()
    assert text.startswith("#") and "Review before use" in text
    config = load_config(suggested)  # a valid scorecard file, in bins and points
    assert config.metrics_version == load_config().metrics_version  # drops into place: same events
    assert "fitted on outcomes before" in fit.stdout

    trial = _cli("backtest", "--config", str(suggested), root=planted.root)
    assert trial.returncode == 0, trial.stderr
    table = [line.split() for line in trial.stdout.splitlines() if line.split()[:1] in (["30"], ["60"], ["90"])]
    assert [row[:2] for row in table] == [[lead, name] for lead in ("30", "60", "90")
                                          for name in ("current", "candidate")]
    assert _digest(warehouse) == before  # attached read-only
    after = export_files(planted.root)
    assert after.keys() == exports.keys()
    for path, frame in exports.items():
        assert after[path] == frame if isinstance(frame, bytes) else after[path].equals(frame), path
    with duckdb.connect(str(planted.root / "scratch.duckdb"), read_only=True) as conn:
        tables = {t for (t,) in conn.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables()")
                  .fetchall()}
    assert {"candidate.account_health", "candidate.candidate_backtest_summary",
            "candidate.current_backtest_summary"} <= tables


@pytest.mark.slow
def test_the_production_scorecard_tried_as_a_candidate_gives_the_production_figures(planted):
    from health_pipeline.candidate import try_scorecard

    production = load_config()
    trial = try_scorecard(planted.root / "warehouse.duckdb", planted.root / "scratch.duckdb", production,
                          production, (30, 60, 90))
    figures = trial.comparison.set_index(["lead_days", "scorecard"])
    for lead in (30, 60, 90):
        pd.testing.assert_series_equal(figures.loc[(lead, "candidate")], figures.loc[(lead, "current")],
                                       check_names=False)
    summary = planted.query("SELECT lead_days, n_outcomes, auc FROM export.backtest_summary ORDER BY lead_days")
    current = trial.comparison[trial.comparison["scorecard"] == "current"]
    assert current["outcomes"].tolist() == summary["n_outcomes"].tolist()
    assert current["auc"].tolist() == pytest.approx(summary["auc"].tolist())


@pytest.mark.slow
def test_the_production_file_is_never_overwritten_and_a_bad_candidate_is_refused(planted, tmp_path):
    production = tmp_path / "production.yaml"  # a copy, so a failure here cannot touch the shipped file
    production.write_text(DEFAULT_CONFIG_PATH.read_text())
    refused = _cli("suggest-scorecard", "--out", str(production), root=planted.root,
                   env={"HEALTH_CONFIG": str(production)})
    assert refused.returncode == 2 and "is the production scorecard" in refused.stderr
    assert production.read_text() == DEFAULT_CONFIG_PATH.read_text()
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["events"]["features"] = [*raw["events"]["features"], "export_csv"]
    raw["scorecard"]["components"]["usage_level"]["metric"] = "export_csv_users_28d"
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(yaml.safe_dump(raw, sort_keys=False))
    trial = _cli("backtest", "--config", str(candidate), root=planted.root)
    assert trial.returncode == 2 and "export_csv_users_28d" in trial.stderr
