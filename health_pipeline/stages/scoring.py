"""Stage e: score every non-churned account from its metrics with the configured scorecard.

Each component bins one account metric into points; the score is the points won divided by
the points possible, times 100, rounded to one decimal. The scorecard's bins are loaded into
a table and joined to the metrics, so scoring is one set-based query over any range of days.
"""


import dagster as dg
import duckdb

from health_pipeline.config import Scorecard, Settings
from health_pipeline.partitions import daily_partitions
from health_pipeline.previews import score_preview
from health_pipeline.warehouse import Warehouse, date_range, quote, write_range


def score_column(component: str) -> str:
    return f"score_{component}"


def load_scorecard(conn: duckdb.DuckDBPyConnection, scorecard: Scorecard) -> None:
    """Write the scorecard into temp tables scorecard_components and scorecard_bins."""
    conn.execute("""
        CREATE OR REPLACE TEMP TABLE scorecard_components (
            component VARCHAR, metric VARCHAR, missing VARCHAR, max_points DOUBLE)
    """)
    conn.execute("""
        CREATE OR REPLACE TEMP TABLE scorecard_bins (
            component VARCHAR, bin VARCHAR, lower DOUBLE, upper DOUBLE,
            lower_inclusive BOOLEAN, upper_inclusive BOOLEAN, points DOUBLE)
    """)
    conn.executemany(
        "INSERT INTO scorecard_components VALUES (?, ?, ?, ?)",
        [(c.name, c.metric, c.missing, c.max_points) for c in scorecard.components],
    )
    conn.executemany(
        "INSERT INTO scorecard_bins VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (c.name, b.label, b.lower, b.upper, b.lower_inclusive, b.upper_inclusive, b.points)
            for c in scorecard.components
            for b in c.bins
        ],
    )


def account_health_sql(scorecard: Scorecard) -> str:
    metric_columns = ", ".join(f"CAST({quote(m)} AS DOUBLE) AS {quote(m)}" for m in scorecard.metrics)
    per_component = ",\n".join(
        f"max(points_won) FILTER (WHERE component = $component_{i}) AS {quote(score_column(c.name))}"
        for i, c in enumerate(scorecard.components)
    )
    return f"""
        WITH scored_accounts AS (
            -- Churned accounts are not scored.
            SELECT m.snapshot_date, m.account_id, {metric_columns}
            FROM core.account_metrics m JOIN raw.accounts a ON a.account_id = m.account_id
            WHERE m.snapshot_date BETWEEN $first_day AND $last_day
              AND a.status IS DISTINCT FROM 'churned'
        ),
        metric_values AS (
            SELECT * FROM scored_accounts
            UNPIVOT INCLUDE NULLS (metric_value FOR metric IN ({", ".join(quote(m) for m in scorecard.metrics)}))
        ),
        binned AS (
            SELECT v.snapshot_date, v.account_id, c.component, v.metric_value, c.missing, c.max_points,
                   b.bin, b.points
            FROM metric_values v
            JOIN scorecard_components c ON c.metric = v.metric
            LEFT JOIN scorecard_bins b
              ON b.component = c.component
             AND (v.metric_value > b.lower OR (b.lower_inclusive AND v.metric_value = b.lower))
             AND (v.metric_value < b.upper OR (b.upper_inclusive AND v.metric_value = b.upper))
        ),
        component_points AS (
            -- A null metric scores by the component's missing-data policy; 'exclude' drops it.
            SELECT *,
                   CASE WHEN metric_value IS NOT NULL THEN points
                        WHEN missing = 'zero' THEN 0
                        WHEN missing = 'neutral' THEN max_points / 2
                   END AS points_won,
                   CASE WHEN metric_value IS NULL AND missing = 'exclude' THEN 0 ELSE max_points END
                       AS points_possible
            FROM binned
        ),
        account_scores AS (
            SELECT snapshot_date, account_id,
                   round(100 * sum(points_won) / nullif(sum(points_possible), 0), 1) AS health_score,
                   {per_component}
            FROM component_points
            GROUP BY snapshot_date, account_id
        )
        SELECT snapshot_date, account_id, health_score,
               CASE WHEN health_score >= $healthy_from THEN 'healthy'
                    WHEN health_score >= $neutral_from THEN 'neutral'
                    ELSE 'at_risk'
               END AS health_band,
               * EXCLUDE (snapshot_date, account_id, health_score),
               $scorecard_version AS scorecard_version
        FROM account_scores
    """


def account_health_params(settings: Settings, first_day, last_day) -> dict:
    scorecard = settings.scorecard
    return {
        "first_day": first_day,
        "last_day": last_day,
        "healthy_from": scorecard.healthy_from,
        "neutral_from": scorecard.neutral_from,
        "scorecard_version": settings.scorecard_version,
        **{f"component_{i}": c.name for i, c in enumerate(scorecard.components)},
    }


def build_account_health(settings: Settings) -> dg.AssetsDefinition:
    @dg.asset(
        name="account_health",
        deps=["account_metrics"],
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"duckdb"},
        group_name="health",
        pool=Warehouse.POOL,
        # Editing the scorecard changes this version, so the UI marks scores stale.
        code_version=settings.scorecard_version,
    )
    def account_health(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        """One row per non-churned account per snapshot date D: its health score and band.

        health_score is 0-100 (points won / points possible x 100, one decimal); health_band is
        healthy, neutral or at_risk by the scorecard's cut-offs; `score_<component>` holds the
        points each component won; scorecard_version identifies the scorecard used.
        """
        first_day, last_day = date_range(context.partition_time_window)
        with warehouse.get_connection() as conn:
            load_scorecard(conn, settings.scorecard)
            meta = write_range(
                conn, "core.account_health", "snapshot_date", first_day, last_day,
                account_health_sql(settings.scorecard), account_health_params(settings, first_day, last_day),
            )
            bands = conn.execute(
                "SELECT health_band, count(*) FROM core.account_health"
                " WHERE snapshot_date BETWEEN ? AND ? GROUP BY ALL ORDER BY ALL",
                [first_day, last_day],
            ).fetchall()
            meta.update({f"accounts_{band}": n for band, n in bands})
            meta.update(score_preview(conn, last_day))
        return dg.MaterializeResult(metadata=meta)

    return account_health
