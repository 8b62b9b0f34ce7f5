"""score_backtest: how well the score, days before each customer outcome, foretold it.

For every outcome in raw.outcomes and every lead time L (HEALTH_BACKTEST_LEAD_DAYS, default 30,
60 and 90 days), backtest_pairs.sql reads what account_health said on outcome_date − L;
health_pipeline.backtest computes the figures docs/metrics.md defines ("Backtest"). One step
writes four tables, each its own asset: the summary, churn per band, the predictive power of
every metric and component, and the churned accounts the score called healthy. Each run
recomputes them over all of history, after the range's scores, and also writes them as CSV files
and one plot under `<export dir>/backtest/`. They are partitioned by day like every other asset,
only so that a backfill of any selection is one run: a day's partition records the run that
covered that day, and the newest record is the current backtest.
"""

import datetime as dt
import hashlib
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import duckdb
import pyarrow as pa

from health_pipeline import settings
from health_pipeline.assets import daily
from health_pipeline.export_files import discard, staging_dir, write_atomically
from health_pipeline.partitions import date_range
from health_pipeline.previews import markdown_table
from health_pipeline.publish import replace_table, table_metadata, transaction
from health_pipeline.resources import ExportTarget, Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sql import SqlFolder, scalar, table_exists

if TYPE_CHECKING:
    import pandas as pd

    from health_pipeline.backtest import BacktestTables

SQL = SqlFolder(__file__)
# asset key -> (warehouse table, what a row is)
TABLES = {
    "backtest_summary": ("export.backtest_summary",
                         "One row per scorecard version and lead time L: outcomes, churn base rate, the AUC of the "
                         "health score L days before each outcome with its bootstrap interval, at_risk precision "
                         "and recall, ARR churned and ARR churned that was flagged at_risk, and downgrades."),
    "backtest_bands": ("export.backtest_bands",
                       "One row per scorecard version, lead time L and health band at L: outcomes, churned, "
                       "retained, downgraded, churn rate and lift over the base rate."),
    "backtest_metric_power": ("export.backtest_metric_power",
                              "One row per scorecard version, lead time L and measure (every account metric and "
                              "every component's points): the AUC with which it foretold churn, its interval and "
                              "direction."),
    "backtest_misses": ("export.backtest_misses",
                        "One row per churned outcome whose account was healthy L days before: its score, "
                        "components, top_drag and score_reason, for the post-mortem."),
}
BACKTEST_ASSETS = tuple(TABLES)
# Under the export dir: the tables as CSV files and the plot.
BACKTEST_DIR = "backtest"
PLOT = "churn_rate_by_band.png"
TOP_MEASURES = 10  # shown in the UI
SEED = 0  # the bootstrap's, so reruns agree
BOOTSTRAP_SAMPLES = 1000
# Bookkeeping, no asset: the digest of the inputs the published backtest was computed from, so a
# run whose outcomes and paired scores did not change skips the bootstrap (most daily runs).
INPUTS = "export.backtest_inputs"


def backtest_pairs(conn: duckdb.DuckDBPyConnection, config: HealthConfig, lead_days: tuple[int, ...],
                   scores: str = "core.account_health") -> "pd.DataFrame":
    """One row per outcome and lead time at which the account was scored in `scores`."""
    params = {"lead_days": list(lead_days), "scoring_version": config.scoring_version,
              "segment_versions": [segment.scorecard.version for segment in config.segments]}
    pairs = SQL.run(conn, "backtest_pairs", params, config=config, scores=scores).df()
    for column in ("outcome_date", "scored_on"):
        pairs[column] = pairs[column].dt.date
    return pairs


def inputs_digest(pairs: "pd.DataFrame", config: HealthConfig, lead_days: tuple[int, ...]) -> str:
    """What the backtest is a function of: the pairs, and how they are read and resampled."""
    from pandas.util import hash_pandas_object

    digest = hashlib.sha256(json.dumps([config.scoring_version, config.account_metrics, config.components,
                                        list(lead_days), list(pairs.columns), SEED, BOOTSTRAP_SAMPLES]).encode())
    digest.update(hash_pandas_object(pairs, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def compute(pairs: "pd.DataFrame", config: HealthConfig) -> "BacktestTables":
    """The backtest's tables from the pairs."""
    # Imported when used: scikit-learn, scipy and altair add a second to every start-up.
    from health_pipeline.backtest import backtest_tables

    return backtest_tables(pairs, config.account_metrics, config.components,
                           bootstrap_samples=BOOTSTRAP_SAMPLES, seed=SEED)


def unchanged_since(conn: duckdb.DuckDBPyConnection, digest: str, out_dir: Path):
    """When the published tables and files were computed from the same inputs: since when; else None."""
    files = [out_dir / f"{key}.csv" for key in TABLES]
    if not all(table_exists(conn, table) for table in (INPUTS, *(t for t, _ in TABLES.values()))) or not all(
            f.exists() for f in files):
        return None
    if scalar(conn, "SELECT count(*) FROM export.backtest_bands") and not (out_dir / PLOT).exists():
        return None
    stored = conn.execute(f"SELECT digest, computed_at FROM {INPUTS}").fetchall()
    return stored[0][1] if stored and stored[0][0] == digest else None


def frames(tables: "BacktestTables") -> "dict[str, pd.DataFrame]":
    """Each asset's rows."""
    return {"backtest_summary": tables.summary, "backtest_bands": tables.bands,
            "backtest_metric_power": tables.metric_power, "backtest_misses": tables.misses}


def publish(conn: duckdb.DuckDBPyConnection, tables: "BacktestTables", digest: str) -> None:
    """Replace the four tables together, and record what they were computed from, in one transaction."""
    staged = {}
    for key, frame in frames(tables).items():
        staged[TABLES[key][0]] = f"staged_{key}"
        conn.register(f"{key}_rows", frame)
        conn.execute(f"CREATE OR REPLACE TEMP TABLE staged_{key} AS SELECT * FROM {key}_rows")
        conn.unregister(f"{key}_rows")
    with transaction(conn, staged):
        for table, staging in staged.items():
            replace_table(conn, table, staging)
        conn.execute(f"CREATE OR REPLACE TABLE {INPUTS} AS SELECT $digest AS digest, $now AS computed_at",
                     {"digest": digest, "now": dt.datetime.now(dt.UTC).replace(tzinfo=None)})


def write_files(tables: "BacktestTables", out_dir: Path) -> None:
    """The tables as CSV files, and the plot of churn per band when there are outcomes."""
    from health_pipeline.backtest import churn_rate_chart, save_png

    for key, frame in frames(tables).items():
        write_atomically(pa.Table.from_pandas(frame, preserve_index=False), out_dir / f"{key}.csv")
    if not tables.bands.empty:
        save_png(churn_rate_chart(tables.bands), out_dir / PLOT)


def publish_with_files(conn: duckdb.DuckDBPyConnection, tables: "BacktestTables", digest: str,
                       export_dir: Path) -> None:
    """Write, publish, move: the files are written to a private staging folder first (a folder that
    cannot be written fails the run before any table changes), then the tables are committed, then
    each file is renamed into place; an old plot goes when there are no outcomes left to draw."""
    staged = staging_dir(export_dir) / BACKTEST_DIR
    try:
        write_files(tables, staged)
        publish(conn, tables, digest)
        out_dir = export_dir / BACKTEST_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / PLOT).unlink(missing_ok=True)
        for path in staged.iterdir():
            os.replace(path, out_dir / path.name)
    finally:
        discard(staged.parent)


def _number(value, digits: int = 3) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def summary_markdown(summary: "pd.DataFrame") -> str:
    if summary.empty:
        return ("**No outcomes to backtest.** Add an `outcomes` export (renewals and churns from the CRM) "
                "to the raw directory: see docs/backtest.md, \"Feed it real outcomes\".")
    rows = [(r.scorecard_version, r.lead_days, r.n_outcomes, r.n_churned, _number(r.base_churn_rate),
             f"{_number(r.auc)} [{_number(r.auc_ci_low)}, {_number(r.auc_ci_high)}]",
             _number(r.at_risk_precision), _number(r.at_risk_recall),
             f"{r.arr_churned_flagged_at_risk:,.0f} of {r.arr_churned:,.0f}")
            for r in summary.itertuples()]
    return "**How well the score foretold churn**\n\n" + markdown_table(
        ["scorecard", "lead days", "outcomes", "churned", "base rate", "AUC [95% CI]", "at_risk precision",
         "at_risk recall", "ARR churned flagged at_risk"], rows)


def power_markdown(metric_power: "pd.DataFrame") -> str:
    if metric_power.empty:
        return "No outcomes to backtest."
    lead = metric_power["lead_days"].min()
    top = metric_power[metric_power["lead_days"] == lead].head(TOP_MEASURES)
    rows = [(r.measure, r.kind, r.n, _number(r.auc), f"[{_number(r.auc_ci_low)}, {_number(r.auc_ci_high)}]",
             r.direction) for r in top.itertuples()]
    return f"**The {len(rows)} measures that best foretold churn {lead} days ahead**\n\n" + markdown_table(
        ["measure", "kind", "outcomes", "AUC", "95% CI", "direction"], rows)


def build_score_backtest(config: HealthConfig) -> dg.AssetsDefinition:
    lead_days = settings.backtest_lead_days()
    specs = [
        dg.AssetSpec(key, description=row, kinds={"duckdb"}, code_version=config.scoring_version,
                     deps=["account_health", "account_metrics", "account_history", "outcomes"],
                     metadata={"dagster/table_name": table})
        for key, (table, row) in TABLES.items()
    ]

    # The daily partitions and single-run policy every asset shares: Dagster puts assets into one
    # backfill run only when both are the same, so unpartitioned, the backtest and the morning
    # report after it took a run each.
    @dg.multi_asset(name="score_backtest", specs=specs, **daily())
    def score_backtest(context: dg.AssetExecutionContext, warehouse: Warehouse, export_target: ExportTarget):
        """Backtests the health score against every customer outcome: for each outcome and lead
        time L, what the score said L days before it. Recomputed over all of history when the
        outcomes or the scores they pair with changed."""
        import pandas as pd  # imported when used, as in compute()

        out_dir = Path(export_target.export_dir) / BACKTEST_DIR
        with warehouse.get_connection() as conn:
            scored = table_exists(conn, "core.account_health")
            pairs = backtest_pairs(conn, config, lead_days) if scored else pd.DataFrame()
            digest = inputs_digest(pairs, config, lead_days)
            since = unchanged_since(conn, digest, out_dir)
            if since is None:
                tables = compute(pairs, config)
                publish_with_files(conn, tables, digest, Path(export_target.export_dir))
                summary, power = tables.summary, tables.metric_power
            else:
                summary, power = (conn.execute(f"SELECT * FROM {TABLES[key][0]}").df()
                                  for key in ("backtest_summary", "backtest_metric_power"))
            metadata = {key: table_metadata(conn, table, scalar(conn, f"SELECT count(*) FROM {table}"))
                        for key, (table, _) in TABLES.items()}
        plot = out_dir / PLOT if (out_dir / PLOT).exists() else None
        # What the run found goes on its last day's record only; every day shows the tables' rows.
        last_day = date_range(context.partition_time_window)[1].isoformat()
        context.add_asset_metadata({
            "lead_days": ", ".join(map(str, lead_days)),
            "pairs": len(pairs),
            "recomputed": since is None,
            **({"inputs_unchanged_since": str(since)} if since is not None else {}),
            "summary": dg.MetadataValue.md(summary_markdown(summary)),
            **({"plot": dg.MetadataValue.path(str(plot.resolve()))} if plot else {}),
        }, asset_key="backtest_summary", partition_key=last_day)
        context.add_asset_metadata({"most_predictive": dg.MetadataValue.md(power_markdown(power))},
                                   asset_key="backtest_metric_power", partition_key=last_day)
        for key, meta in metadata.items():
            yield dg.MaterializeResult(asset_key=key, metadata=meta)

    return score_backtest
