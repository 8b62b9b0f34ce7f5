"""Try a candidate scorecard on history before switching to it, and suggest one fitted from history.

`try_scorecard` re-scores the stored account metrics with a candidate configuration and
backtests it beside the production scores on the same outcomes. The warehouse is attached read
only, so production rows and files cannot change; the candidate's scores and backtest tables
go to a scratch DuckDB file. `suggest` fits a scorecard from the stored history
(scorecard/fit.py) and writes it as a YAML file for review; it never replaces the production one.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import yaml

from health_pipeline.assets.account_health.asset import account_health_params, account_health_sql, load_scorecards
from health_pipeline.assets.score_backtest.asset import backtest_pairs, compute, frames
from health_pipeline.scorecard.fit import FittedScorecard, suggest_scorecard
from health_pipeline.scorecard.model import HealthConfig

# Where the candidate's scores and backtest go: a schema of the scratch database.
SCRATCH_SCHEMA = "candidate"


class TrialError(ValueError):
    """The candidate cannot be tried on this warehouse (no scores yet, or metrics it lacks)."""


@dataclass(frozen=True)
class Trial:
    comparison: pd.DataFrame  # per lead, a row per scorecard (current, candidate) on the same outcomes
    first_day: dt.date
    last_day: dt.date
    scratch: Path


@contextmanager
def _scratch_connection(warehouse: Path, scratch: Path):
    """A fresh scratch database with the warehouse attached read-only as its default catalog."""
    if not warehouse.exists():
        raise TrialError(f"no warehouse at {warehouse}: run the pipeline first (health-pipeline run)")
    scratch.parent.mkdir(parents=True, exist_ok=True)
    scratch.unlink(missing_ok=True)
    conn = duckdb.connect(str(scratch))
    try:
        conn.execute("ATTACH $path AS warehouse (READ_ONLY)", {"path": str(warehouse)})
        conn.execute("USE warehouse")  # the pipeline's SQL names raw.* and core.* unqualified
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS scratch."{SCRATCH_SCHEMA}"')
        yield conn
    finally:
        conn.close()


def _scored_days(conn: duckdb.DuckDBPyConnection, start: dt.date | None, end: dt.date | None):
    first, last = conn.execute("SELECT min(snapshot_date), max(snapshot_date) FROM core.account_health").fetchall()[0]
    if first is None:
        raise TrialError("the warehouse holds no scores yet: run the pipeline first (health-pipeline run)")
    return max(first, start or first), min(last, end or last)


def _check_metrics(conn: duckdb.DuckDBPyConnection, candidate: HealthConfig) -> None:
    stored = {name for (name,) in conn.execute("SELECT column_name FROM information_schema.columns "
                                               "WHERE table_schema = 'core' AND table_name = 'account_metrics'")
              .fetchall()}
    if missing := [m for m in candidate.scored_metrics if m not in stored]:
        raise TrialError(f"the candidate scores metrics the warehouse does not compute: {', '.join(missing)}. "
                         "Add their events to the production configuration and re-run the pipeline first.")


def _figures(tables, scorecard: str) -> pd.DataFrame:
    """Per lead, one scorecard's headline figures."""
    summary = tables.summary.groupby("lead_days").agg(
        outcomes=("n_outcomes", "sum"), churned=("n_churned", "sum"), auc=("auc", "mean"),
        auc_ci_low=("auc_ci_low", "mean"), auc_ci_high=("auc_ci_high", "mean"),
        at_risk_precision=("at_risk_precision", "mean"), at_risk_recall=("at_risk_recall", "mean"))
    lift = tables.bands[tables.bands["health_band"] == "at_risk"].groupby("lead_days")["lift"].mean()
    figures = summary.join(lift.rename("at_risk_lift")).reset_index()
    figures.insert(1, "scorecard", scorecard)
    return figures


def try_scorecard(warehouse: Path, scratch: Path, production: HealthConfig, candidate: HealthConfig,
                  lead_days: tuple[int, ...], start: dt.date | None = None, end: dt.date | None = None) -> Trial:
    """Re-score [start, end] (default: every scored day) with `candidate` into the scratch database,
    and backtest both scorecards on the outcomes whose lead day falls in that range and that both scored."""
    with _scratch_connection(warehouse, scratch) as conn:
        first_day, last_day = _scored_days(conn, start, end)
        _check_metrics(conn, candidate)
        load_scorecards(conn, candidate)
        scores = f'scratch."{SCRATCH_SCHEMA}".account_health'
        conn.execute(f"CREATE TABLE {scores} AS {account_health_sql(candidate, with_history=False)}",
                     account_health_params(candidate, first_day, last_day))
        current = backtest_pairs(conn, production, lead_days)
        tried = backtest_pairs(conn, candidate, lead_days, scores=scores)
        # The same outcomes for both: paired by both, on a re-scored day.
        keys = ["account_id", "outcome_date", "outcome", "lead_days", "scored_on"]
        shared = current[keys].merge(tried[keys])
        shared = shared[(shared["scored_on"] >= first_day) & (shared["scored_on"] <= last_day)]
        current, tried = current.merge(shared), tried.merge(shared)
        results = {
            "current": compute(current, production),
            "candidate": compute(tried, candidate),
        }
        for name, tables in results.items():
            for key, frame in frames(tables).items():
                conn.register("rows", frame)
                conn.execute(f'CREATE TABLE scratch."{SCRATCH_SCHEMA}"."{name}_{key}" AS SELECT * FROM rows')
                conn.unregister("rows")
    comparison = pd.concat([_figures(tables, name) for name, tables in results.items()])
    comparison = comparison.sort_values(["lead_days", "scorecard"], ascending=[True, False], kind="stable")
    return Trial(comparison.reset_index(drop=True), first_day, last_day, scratch)


def suggest(warehouse: Path, production: HealthConfig, production_file: Path, lead_days: tuple[int, ...],
            out: Path) -> FittedScorecard:
    """Fit a scorecard from the stored history and write it to `out` (never over the production file)."""
    if out.resolve() == production_file.resolve():
        raise TrialError(f"{out} is the production scorecard: write the suggestion to another file and review it")
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        pairs = backtest_pairs(conn, production, lead_days)
    fitted = suggest_scorecard(pairs, production, yaml.safe_load(production_file.read_text()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(fitted.yaml_text)
    return fitted
