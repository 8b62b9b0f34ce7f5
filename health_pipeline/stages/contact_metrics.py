"""Stage c: rolling 28- and 90-day metrics per contact for each snapshot date D.

Windows, by UTC date: W28(D) = [D-27, D], P28(D) = [D-55, D-28], W90(D) = [D-89, D].
A range of snapshot dates is computed in one query: each day of the fact joins the
snapshot dates whose windows it falls in.
"""


import dagster as dg

from health_pipeline.config import Settings
from health_pipeline.stages import stage_asset
from health_pipeline.stages.activity import event_count_column
from health_pipeline.warehouse import Warehouse, date_range, quote, write_range

LOOKBACK_DAYS = 89  # W90 reaches back 89 days before D
# Every snapshot date joins up to 90 days of the fact, so one statement over a long range builds
# a join and an aggregate that outgrow DuckDB's memory and spill to disk. Ten days at a time stay
# in memory: a 100-day backfill at 1M events a day took 113 s as one statement under a 2 GB
# limit and 38 s in batches of 10 (docs/performance.md).
BATCH_DAYS = 10


def event_metric_column(event: str) -> str:
    return f"{event}_28d"


def _sum_of(events: tuple[str, ...], prefix: str = "") -> str:
    return "(" + " + ".join(f"{prefix}{quote(event_count_column(e))}" for e in events) + ")"


def contact_metrics_sql(settings: Settings) -> str:
    per_event = ",\n".join(
        f"sum(a.{quote(event_count_column(e))}) FILTER (WHERE a.activity_date >= d.snapshot_date - 27)"
        f" AS {quote(event_metric_column(e))}"
        for e in settings.tracked_events
    )
    per_event_out = ",\n".join(
        f"CAST(coalesce(w.{quote(event_metric_column(e))}, 0) AS BIGINT) AS {quote(event_metric_column(e))}"
        for e in settings.tracked_events
    )
    return f"""
        WITH snapshot_dates AS (
            SELECT CAST(generate_series AS DATE) AS snapshot_date
            FROM generate_series($first_day::TIMESTAMP, $last_day::TIMESTAMP, INTERVAL 1 DAY)
        ),
        counted_contacts AS (
            SELECT user_id, account_id, identity, joindate
            FROM raw.contacts WHERE excluded_reason IS NULL
        ),
        contact_days AS (
            -- A user is a contact from their joindate on (an unknown joindate counts from the start).
            SELECT d.snapshot_date, c.*
            FROM snapshot_dates d JOIN counted_contacts c
              ON coalesce(c.joindate, DATE '0001-01-01') <= d.snapshot_date
        ),
        recent_activity AS (
            SELECT *, {_sum_of(settings.usage_events)} AS usage, {quote(event_count_column(settings.kpi_event))} AS kpi
            FROM core.daily_contact_activity
            WHERE activity_date BETWEEN $first_day::DATE - {LOOKBACK_DAYS} AND $last_day::DATE
        ),
        older_history AS (
            -- Before every window: only the latest moments matter, for last_seen_at and recency.
            SELECT user_id, max(last_seen_at) AS last_seen_at,
                   max(activity_date) FILTER (WHERE {_sum_of(settings.usage_events)} > 0) AS last_usage_date,
                   min(activity_date) FILTER (WHERE sessions > 0) AS first_session_date,
                   arg_min(first_session_activated, activity_date) FILTER (WHERE sessions > 0)
                       AS first_session_activated
            FROM core.daily_contact_activity
            WHERE activity_date < $first_day::DATE - {LOOKBACK_DAYS}
            GROUP BY user_id
        ),
        windowed AS (
            SELECT d.snapshot_date, a.user_id,
                   sum(a.sessions) FILTER (WHERE a.activity_date >= d.snapshot_date - 27) AS sessions_28d,
                   sum(a.sessions) FILTER (WHERE a.activity_date >= d.snapshot_date - 89) AS sessions_90d,
                   count(*) FILTER (WHERE a.activity_date >= d.snapshot_date - 27) AS active_days_28d,
                   sum(a.usage) FILTER (WHERE a.activity_date >= d.snapshot_date - 27) AS usage_28d,
                   sum(a.usage) FILTER (
                       WHERE a.activity_date BETWEEN d.snapshot_date - 55 AND d.snapshot_date - 28
                   ) AS usage_prev_28d,
                   sum(a.usage) FILTER (WHERE a.activity_date >= d.snapshot_date - 89) AS usage_90d,
                   sum(a.kpi) FILTER (WHERE a.activity_date >= d.snapshot_date - 27) AS kpi_28d,
                   {per_event},
                   max(a.last_seen_at) AS last_seen_at,
                   max(a.activity_date) FILTER (WHERE a.usage > 0) AS last_usage_date,
                   min(a.activity_date) FILTER (WHERE a.sessions > 0) AS first_session_date,
                   arg_min(a.first_session_activated, a.activity_date) FILTER (WHERE a.sessions > 0)
                       AS first_session_activated
            FROM snapshot_dates d
            JOIN recent_activity a ON a.activity_date <= d.snapshot_date
            GROUP BY d.snapshot_date, a.user_id
        )
        SELECT c.snapshot_date, c.user_id, c.account_id, c.identity,
               CAST(coalesce(w.sessions_28d, 0) AS BIGINT) AS sessions_28d,
               CAST(coalesce(w.sessions_90d, 0) AS BIGINT) AS sessions_90d,
               CAST(coalesce(w.active_days_28d, 0) AS BIGINT) AS active_days_28d,
               {per_event_out},
               CAST(coalesce(w.usage_28d, 0) AS BIGINT) AS usage_28d,
               CAST(coalesce(w.usage_prev_28d, 0) AS BIGINT) AS usage_prev_28d,
               CAST(coalesce(w.usage_90d, 0) AS BIGINT) AS usage_90d,
               CAST(coalesce(w.kpi_28d, 0) AS BIGINT) AS kpi_28d,
               coalesce(w.last_seen_at, h.last_seen_at) AS last_seen_at,
               coalesce(w.last_usage_date, h.last_usage_date) AS last_usage_date,
               coalesce(h.first_session_date, w.first_session_date) AS first_session_date,
               CASE WHEN h.first_session_date IS NOT NULL THEN h.first_session_activated
                    ELSE w.first_session_activated
               END AS first_session_activated
        FROM contact_days c
        LEFT JOIN windowed w ON w.snapshot_date = c.snapshot_date AND w.user_id = c.user_id
        LEFT JOIN older_history h ON h.user_id = c.user_id
    """


def build_contact_metrics(settings: Settings) -> dg.AssetsDefinition:
    @stage_asset(
        name="contact_metrics",
        deps=["daily_contact_activity"],
        kinds={"duckdb"},
        code_version=settings.metrics_version,
    )
    def contact_metrics(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        """One row per counted contact per snapshot date D (contacts who joined on or before D).

        Rolling-window usage of one person: sessions_28d/90d, active_days_28d, `<event>_28d` per
        tracked event, usage_28d / usage_prev_28d / usage_90d, kpi_28d, last_seen_at (latest
        session or event up to the end of D, over all history), last_usage_date, and the
        contact's first session (first_session_date, first_session_activated) up to D.
        """
        first_day, last_day = date_range(context.partition_time_window)
        with warehouse.get_connection() as conn:
            meta = write_range(
                conn, "core.contact_metrics", "snapshot_date", first_day, last_day,
                contact_metrics_sql(settings), {"first_day": first_day, "last_day": last_day},
                batch_days=BATCH_DAYS,
            )
        return dg.MaterializeResult(metadata=meta)

    return contact_metrics
