"""Stage b: the compact daily fact that every metric reads instead of raw events."""


import dagster as dg

from health_pipeline.config import Settings
from health_pipeline.partitions import daily_partitions
from health_pipeline.warehouse import Warehouse, date_range, quote, write_range


def event_count_column(event: str) -> str:
    return f"{event}_count"


def daily_activity_sql(settings: Settings) -> str:
    """Per contact per UTC day: sessions, events, the last moment seen, and one count per tracked event."""
    event_counts = ",\n".join(
        f"count(*) FILTER (WHERE event_table_name = ?) AS {quote(event_count_column(e))}"
        for e in settings.tracked_events
    )
    carried_counts = ",\n".join(
        f"coalesce(e.{quote(event_count_column(e))}, 0) AS {quote(event_count_column(e))}"
        for e in settings.tracked_events
    )
    return f"""
        WITH sessions_per_day AS (
            SELECT activity_date, user_id, count(*) AS sessions, max(time) AS last_session_at
            FROM raw.sessions WHERE activity_date BETWEEN ? AND ?
            GROUP BY activity_date, user_id
        ),
        events_per_day AS (
            SELECT activity_date, user_id, count(*) AS events, max(time) AS last_event_at,
                   {event_counts}
            FROM raw.events WHERE activity_date BETWEEN ? AND ?
            GROUP BY activity_date, user_id
        )
        SELECT activity_date, user_id,
               coalesce(s.sessions, 0) AS sessions,
               coalesce(e.events, 0) AS events,
               greatest(s.last_session_at, e.last_event_at) AS last_seen_at,
               {carried_counts}
        FROM sessions_per_day s FULL OUTER JOIN events_per_day e USING (activity_date, user_id)
    """


def daily_activity_params(settings: Settings, first_day, last_day) -> list:
    return [first_day, last_day, *settings.tracked_events, first_day, last_day]


def build_daily_contact_activity(settings: Settings) -> dg.AssetsDefinition:
    @dg.asset(
        name="daily_contact_activity",
        deps=["raw_activity"],
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"duckdb"},
        group_name="health",
        pool=Warehouse.POOL,
        # The fact's columns follow the tracked events, so a change to them marks it stale.
        code_version="tracked:" + ",".join(settings.tracked_events),
    )
    def daily_contact_activity(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        """One row per contact per UTC day with any session or event: the compact fact.

        Columns: sessions started, events of any name, last_seen_at (the latest session or
        event time that day), and `<event>_count` for each event the configuration tracks.
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
