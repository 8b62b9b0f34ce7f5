"""contact_metrics: rolling 28- and 90-day metrics per contact for each snapshot date D."""

import datetime as dt

import dagster as dg
import duckdb

from health_pipeline.assets import (
    IncompleteHistory,
    daily_asset,
    describe_spans,
    materialized,
    publish_range,
    refreshed_through,
    unextracted_days,
)
from health_pipeline.checks import check_specs
from health_pipeline.partitions import date_range
from health_pipeline.publish import plan_batches
from health_pipeline.resources import Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sources import RawSource
from health_pipeline.sql import SqlFolder, scalar

SQL = SqlFolder(__file__)
LOOKBACK_DAYS = 89  # W90 reaches back 89 days before D
# Every snapshot date joins up to 90 days of the fact, so one statement over a long range builds
# a join that outgrows DuckDB's memory and spills to disk: a 100-day backfill at 1M events a day
# took 113 s as one statement under a 2 GB limit and 38 s in batches of 10 (docs/performance.md).
# A batch therefore holds as many snapshot dates as half the memory limit fits, at this many
# bytes per joined fact row: measured at scale M, where 10 days (14.7M joined rows) stay in 2 GB.
BYTES_PER_JOINED_ROW = 64


def batch_plan(conn: duckdb.DuckDBPyConnection, first_day: dt.date, last_day: dt.date) -> dict:
    """How many snapshot dates one statement computes (publish.plan_batches), from the fact rows
    that one snapshot date joins: those of the 90 days up to the range's last day."""
    joined_per_day = scalar(conn, "SELECT count(*) FROM core.daily_contact_activity "
                                  "WHERE activity_date BETWEEN $last_day::DATE - $lookback_days AND $last_day",
                            {"last_day": last_day, "lookback_days": LOOKBACK_DAYS})
    return plan_batches(conn, first_day, last_day, joined_per_day * BYTES_PER_JOINED_ROW,
                        f"each snapshot date joins about {joined_per_day:,} fact rows")


def usage_events(config: HealthConfig) -> list[str]:
    """The key of core.contact_recency's checkpoints: the usage events their last_usage_date counts."""
    return sorted(config.usage_events)


def month_ends(first_day: dt.date, last_day: dt.date):
    """The last day of each month from first_day's month on, up to last_day."""
    month_end = first_day
    while True:
        month_end = (month_end.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        if month_end > last_day:
            return
        yield month_end
        month_end += dt.timedelta(days=1)


def keep_recency_checkpoints(conn: duckdb.DuckDBPyConnection, config: HealthConfig) -> int:
    """Build the month-end checkpoints of core.contact_recency that a run's windows can read from
    (older_history): every month end before the 90 days up to the fact's latest day, each on the
    one before it. A daily run then reads at most a month of the fact before its windows, however
    long the history. Only speed depends on them: a missing one makes the read longer, never
    different. Returns how many were built."""
    SQL.run(conn, "contact_recency_shape")
    key = {"usage_events": usage_events(config)}
    first_day, last_day = conn.execute(
        "SELECT min(activity_date), max(activity_date) FROM core.daily_contact_activity").fetchall()[0]
    SQL.run(conn, "contact_recency_before_the_fact", {"first_day": first_day or dt.date.max})
    if first_day is None:
        return 0
    stored = {day for (day,) in conn.execute(
        "SELECT DISTINCT month_end FROM core.contact_recency WHERE usage_events = $usage_events", key).fetchall()}
    built = 0
    for month_end in month_ends(first_day, last_day - dt.timedelta(days=LOOKBACK_DAYS + 1)):
        if month_end not in stored:
            SQL.run(conn, "contact_recency_checkpoint", {**key, "month_end": month_end}, config=config)
            built += 1
    return built


def require_whole_history(conn: duckdb.DuckDBPyConnection, raw: RawSource, first_day: dt.date,
                          last_day: dt.date) -> None:
    """Fail, before anything is written, if the days this run computes (with the later days it
    refreshes) would read days of the fact that no run extracted. raw_activity extracts them first
    in the same run, so this stops only a run without it (contact_metrics materialized alone) from
    publishing metrics of a truncated history."""
    through = refreshed_through(conn, "core.contact_metrics", last_day)
    if missing := unextracted_days(conn, raw, through):
        raise IncompleteHistory(
            f"contact_metrics for {first_day} .. {through} reads every earlier day of the fact, and no run extracted "
            f"{describe_spans(missing)}: materialize raw_activity with it (health-pipeline run does), which "
            "extracts them first; nothing was published")


def build_contact_metrics(config: HealthConfig) -> dg.AssetsDefinition:
    @daily_asset(
        name="contact_metrics",
        # Day D's windows read the fact's days D-89 … D. That is not declared as a time-window
        # partition mapping: Dagster would then extend a UI backfill of days 1-11 to days 1-100
        # downstream, scoring days that have no raw data. The asset refreshes the later days it
        # holds itself, and records them as materializations (assets.publish_range).
        deps=["daily_contact_activity", "contact_history"],
        kinds={"duckdb"},
        code_version=config.metrics_version,
        check_specs=check_specs(config, "contact_metrics"),
    )
    def contact_metrics(context: dg.AssetExecutionContext, warehouse: Warehouse, raw_source: RawSource):
        """One row per counted contact per snapshot date D (contacts who joined on or before D).

        Rolling-window usage of one person: sessions_28d/90d, active_days_28d, `<event>_28d` per
        tracked event, usage_28d / usage_prev_28d / usage_90d, kpi_28d, last_seen_at (latest
        session or event up to the end of D, over all history), last_usage_date, and the
        contact's first session (first_session_date, first_session_activated) up to D.
        """
        first_day, last_day = date_range(context.partition_time_window)
        with warehouse.get_connection() as conn:
            require_whole_history(conn, raw_source, first_day, last_day)
            checkpoints_built = keep_recency_checkpoints(conn, config)
            meta = yield from publish_range(
                conn, config, "contact_metrics", "core.contact_metrics", "snapshot_date", first_day, last_day,
                SQL.render("contact_metrics", config=config),
                {"first_day": first_day, "last_day": last_day, "lookback_days": LOOKBACK_DAYS,
                 "usage_events": usage_events(config)},
                batch_plan=batch_plan, windowed=True,
            )
        meta["recency_checkpoints_built"] = dg.MetadataValue.int(checkpoints_built)
        yield from materialized(context, meta)

    return contact_metrics
