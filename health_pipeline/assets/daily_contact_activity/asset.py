"""daily_contact_activity: the compact daily fact that every metric reads instead of raw events."""

import dagster as dg
import duckdb

from health_pipeline.assets import daily_asset, materialized, publish_range
from health_pipeline.partitions import date_range
from health_pipeline.resources import Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sql import SqlFolder, table_exists

SQL = SqlFolder(__file__)


def daily_contact_activity_sql(config: HealthConfig, extra_days: tuple = ()) -> str:
    return SQL.render("daily_contact_activity", config=config, extra_days=bool(extra_days))


def daily_contact_activity_params(config: HealthConfig, first_day, last_day, extra_days: tuple = ()) -> dict:
    return {
        "first_day": first_day,
        "last_day": last_day,
        "first_session_event": config.onboarding.first_session_event,
        **{f"tracked_event_{i}": event for i, event in enumerate(config.tracked_events, start=1)},
        **({"extra_days": list(extra_days)} if extra_days else {}),
    }


def days_to_refresh(conn: duckdb.DuckDBPyConnection, first_day, last_day) -> tuple:
    """Days outside the run whose raw activity another run changed (a copy it superseded)."""
    if not table_exists(conn, "raw.days_to_refresh"):
        return ()
    rows = SQL.run(conn, "queued_days", {"first_day": first_day, "last_day": last_day}).fetchall()
    return tuple(day for (day,) in rows)


def build_daily_contact_activity(config: HealthConfig) -> dg.AssetsDefinition:
    @daily_asset(
        name="daily_contact_activity",
        deps=["raw_events", "raw_sessions"],
        kinds={"duckdb"},
        # The fact's columns follow the configured events, so a change to them marks it stale.
        code_version=config.metrics_version,
    )
    def daily_contact_activity(context: dg.AssetExecutionContext, warehouse: Warehouse):
        """One row per contact per UTC day with any session or event: the compact fact.

        Columns: sessions started, events of any name, last_seen_at (the latest session or
        event time that day), `<event>_count` for each event the configuration tracks, and
        first_session_activated: whether the day's first session included the onboarding
        first-session event (null on days without a session).
        Every metric downstream reads this table, never the raw events.
        """
        first_day, last_day = date_range(context.partition_time_window)
        with warehouse.get_connection() as conn:
            extra = days_to_refresh(conn, first_day, last_day)
            meta = yield from publish_range(
                conn, config, "daily_contact_activity", "core.daily_contact_activity", "activity_date",
                first_day, last_day, daily_contact_activity_sql(config, extra),
                daily_contact_activity_params(config, first_day, last_day, extra), extra_days=extra,
            )
            if table_exists(conn, "raw.days_to_refresh"):
                SQL.run(conn, "unqueue_days", {"first_day": first_day, "last_day": last_day, "extra_days": list(extra)})
        for day in extra:
            yield dg.AssetMaterialization(asset_key="daily_contact_activity", partition=day.isoformat(),
                                          metadata={"refreshed_by_the_run_of": last_day.isoformat()})
        yield from materialized(context, {**meta, "other_days_refreshed": ", ".join(map(str, extra)) or "none"})

    return daily_contact_activity
