"""score_backtest: how well the score, days before each customer outcome, foretold it.

For every outcome in raw.outcomes and every lead time L (HEALTH_BACKTEST_LEAD_DAYS, default 30,
60 and 90 days), backtest_pairs.sql reads what account_health said on outcome_date − L;
health_pipeline.backtest computes the figures docs/metrics.md defines ("Backtest"). One step
writes four tables, each its own asset: the summary, churn per band, the predictive power of
every metric and component, and the churned accounts the score called healthy. They are not
partitioned: each run recomputes them over all of history, after the day's scores, and also
writes them as CSV files and one plot under `<export dir>/backtest/`.
"""

import math
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import duckdb
import pyarrow as pa

from health_pipeline import settings
from health_pipeline.assets import GROUP
from health_pipeline.export_files import write_atomically
from health_pipeline.previews import markdown_table
from health_pipeline.publish import replace_table, table_metadata, transaction
from health_pipeline.resources import ExportTarget, Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sql import SqlFolder, table_exists

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


def backtest_pairs(conn: duckdb.DuckDBPyConnection, config: HealthConfig, lead_days: tuple[int, ...],
                   scores: str = "core.account_health") -> "pd.DataFrame":
    """One row per outcome and lead time at which the account was scored in `scores`."""
    params = {"lead_days": list(lead_days), "scoring_version": config.scoring_version,
              "segment_versions": [segment.scorecard.version for segment in config.segments]}
    pairs = SQL.run(conn, "backtest_pairs", params, config=config, scores=scores).df()
    for column in ("outcome_date", "scored_on"):
        pairs[column] = pairs[column].dt.date
    return pairs


def run_backtest(conn: duckdb.DuckDBPyConnection, config: HealthConfig, lead_days: tuple[int, ...],
                 scores: str = "core.account_health") -> "BacktestTables":
    """The backtest of the scores in `scores` (core.account_health when there are any) against raw.outcomes."""
    # Imported when used: pandas, scikit-learn, scipy and altair add a second to every start-up.
    import pandas as pd

    from health_pipeline.backtest import backtest_tables

    if not table_exists(conn, "core.account_health"):
        return backtest_tables(pd.DataFrame(), config.account_metrics, config.components)
    return backtest_tables(backtest_pairs(conn, config, lead_days, scores), config.account_metrics,
                           config.components, seed=SEED)


def frames(tables: "BacktestTables") -> "dict[str, pd.DataFrame]":
    """Each asset's rows."""
    return {"backtest_summary": tables.summary, "backtest_bands": tables.bands,
            "backtest_metric_power": tables.metric_power, "backtest_misses": tables.misses}


def publish(conn: duckdb.DuckDBPyConnection, tables: "BacktestTables") -> None:
    """Replace the four tables together, in one transaction."""
    staged = {}
    for key, frame in frames(tables).items():
        staged[TABLES[key][0]] = f"staged_{key}"
        conn.register(f"{key}_rows", frame)
        conn.execute(f"CREATE OR REPLACE TEMP TABLE staged_{key} AS SELECT * FROM {key}_rows")
        conn.unregister(f"{key}_rows")
    with transaction(conn, staged):
        for table, staging in staged.items():
            replace_table(conn, table, staging)


def write_files(tables: "BacktestTables", out_dir: Path) -> Path | None:
    """The tables as CSV files and the plot of churn per band; the plot's path, None without outcomes."""
    from health_pipeline.backtest import churn_rate_chart, save_png

    for key, frame in frames(tables).items():
        write_atomically(pa.Table.from_pandas(frame, preserve_index=False), out_dir / f"{key}.csv")
    plot = out_dir / PLOT
    if tables.bands.empty:
        plot.unlink(missing_ok=True)  # an old plot would describe outcomes that are gone
        return None
    save_png(churn_rate_chart(tables.bands), plot)
    return plot


def _number(value, digits: int = 3) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def summary_markdown(summary: "pd.DataFrame") -> str:
    if summary.empty:
        return ("**No outcomes to backtest.** Add an `outcomes` export (renewals and churns from the CRM) "
                "to the raw directory: see the README, section \"Is the score any good?\".")
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
        dg.AssetSpec(key, description=row, kinds={"duckdb"}, code_version=config.scoring_version, group_name=GROUP,
                     deps=["account_health", "account_metrics", "account_history", "outcomes"],
                     metadata={"dagster/table_name": table})
        for key, (table, row) in TABLES.items()
    ]

    # Single-run like every other asset, so a range materialized from the CLI or a UI backfill runs
    # it once, after the range's scores.
    @dg.multi_asset(name="score_backtest", specs=specs, pool=Warehouse.POOL,
                    backfill_policy=dg.BackfillPolicy.single_run())
    def score_backtest(context: dg.AssetExecutionContext, warehouse: Warehouse, export_target: ExportTarget):
        """Backtests the health score against every customer outcome: for each outcome and lead
        time L, what the score said L days before it. Recomputed over all of history each run."""
        with warehouse.get_connection() as conn:
            tables = run_backtest(conn, config, lead_days)
            publish(conn, tables)
            metadata = {key: table_metadata(conn, TABLES[key][0], len(frame)) for key, frame in frames(tables).items()}
        plot = write_files(tables, Path(export_target.export_dir) / BACKTEST_DIR)
        metadata["backtest_summary"] |= {
            "lead_days": ", ".join(map(str, lead_days)),
            "summary": dg.MetadataValue.md(summary_markdown(tables.summary)),
            **({"plot": dg.MetadataValue.path(str(plot.resolve()))} if plot else {}),
        }
        metadata["backtest_metric_power"]["most_predictive"] = dg.MetadataValue.md(power_markdown(tables.metric_power))
        for key, meta in metadata.items():
            yield dg.MaterializeResult(asset_key=key, metadata=meta)

    return score_backtest
