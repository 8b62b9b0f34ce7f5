"""Stage b: the compact daily fact that every metric reads instead of raw events."""


import dagster as dg

from health_pipeline.config import Settings
from health_pipeline.stages import stage_asset
from health_pipeline.warehouse import Warehouse, date_range, quote, write_range


def event_count_column(event: str) -> str:
    return f"{event}_count"


def daily_activity_sql(settings: Settings) -> str:
    """Per contact per UTC day: sessions, events, the last moment seen, and one count per tracked event."""
    event_counts = ",\n".join(
        f"count(*) FILTER (WHERE e.event_table_name = ?) AS {quote(event_count_column(e))}"
        for e in settings.tracked_events
    )
    carried_counts = ",\n".join(
        f"coalesce(e.{quote(event_count_column(e))}, 0) AS {quote(event_count_column(e))}"
        for e in settings.tracked_events
    )
    return f"""
        WITH sessions_per_day AS (
            SELECT activity_date, user_id, count(*) AS sessions, max(time) AS last_session_at,
                   arg_min(session_id, time) AS first_session_id
            FROM raw.sessions WHERE activity_date BETWEEN ? AND ?
            GROUP BY activity_date, user_id
        ),
        events_per_day AS (
            SELECT e.activity_date, e.user_id, count(*) AS events, max(e.time) AS last_event_at,
                   {event_counts},
                   bool_or(e.session_id = s.first_session_id AND e.event_table_name = ?)
                       AS first_session_activated
            FROM raw.events e
            LEFT JOIN sessions_per_day s USING (activity_date, user_id)
            WHERE e.activity_date BETWEEN ? AND ?
            GROUP BY e.activity_date, e.user_id
        )
        SELECT activity_date, user_id,
               coalesce(s.sessions, 0) AS sessions,
               coalesce(e.events, 0) AS events,
               greatest(s.last_session_at, e.last_event_at) AS last_seen_at,
               {carried_counts},
               -- Null on days without a session: there was no first session to judge.
               CASE WHEN s.sessions > 0 THEN coalesce(e.first_session_activated, false) END
                   AS first_session_activated
        FROM sessions_per_day s FULL OUTER JOIN events_per_day e USING (activity_date, user_id)
    """


def daily_activity_params(settings: Settings, first_day, last_day) -> list:
    return [
        first_day, last_day, *settings.tracked_events, settings.onboarding.first_session_event, first_day, last_day,
    ]


def build_daily_contact_activity(settings: Settings) -> dg.AssetsDefinition:
    @stage_asset(
        name="daily_contact_activity",
        deps=["raw_activity"],
        kinds={"duckdb"},
        # The fact's columns follow the configured events, so a change to them marks it stale.
        code_version=settings.metrics_version,
    )
    def daily_contact_activity(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        """One row per contact per UTC day with any session or event: the compact fact.

        Columns: sessions started, events of any name, last_seen_at (the latest session or
        event time that day), `<event>_count` for each event the configuration tracks, and
        first_session_activated: whether the day's first session included the onboarding
        first-session event (null on days without a session).
        Every metric downstream reads this table, never the raw events.
        """
        first_day, last_day = date_range(context.partition_time_window)
        with warehouse.get_connection() as conn:
            meta = write_range(
                conn, "core.daily_contact_activity", "activity_date", first_day, last_day,
                daily_activity_sql(settings), daily_activity_params(settings, first_day, last_day),
            )
        return dg.MaterializeResult(metadata=meta)

    return daily_contact_activity
