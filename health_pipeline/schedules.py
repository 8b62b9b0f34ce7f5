"""The daily refresh: at 02:00 UTC, yesterday's UTC day and the late-data days before it, in one run.

Events can reach the raw export a day or two after they happened. Each daily run therefore
re-materializes the previous HEALTH_LATE_DAYS days (default 2) along with yesterday, so late
events are counted. Every stage replaces exactly the days it runs, so the overlap is safe. A
source that lands deliveries knows more: the days a delivery changed since a run extracted them
(a full resync, rows that arrived weeks late), and the run starts at the earliest of those.
"""

import datetime as dt

import dagster as dg

from health_pipeline.partitions import daily_partitions, partition_range_tags
from health_pipeline.sources import RawSource

DAILY_SCHEDULE = "daily_health_refresh"
DAILY_CRON = "0 2 * * *"

# The sync table is due by 06:00 UTC, written by a run that started after the 02:00 tick.
EXPORT_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 6 * * *", lower_bound_delta=dt.timedelta(hours=4), timezone="UTC"
)


def refresh_range(tick_day: dt.date, late: int, history_start: dt.date,
                  stale_days: tuple[dt.date, ...] = ()) -> tuple[dt.date, dt.date] | None:
    """The days a tick on `tick_day` refreshes: yesterday and the `late` days before it, from the
    earliest of `stale_days` (days the source changed since a run extracted them) when earlier.

    The range never starts before the first partition; None when yesterday is before it.
    """
    last_day = tick_day - dt.timedelta(days=1)
    if last_day < history_start:
        return None
    first_day = min([last_day - dt.timedelta(days=late), *(d for d in stale_days if d <= last_day)])
    return max(first_day, history_start), last_day


def build_daily_schedule(job, late: int) -> dg.ScheduleDefinition:
    """The schedule that runs `job` (the whole chain) daily, redoing `late` days before yesterday."""
    history_start = daily_partitions().start.date()

    @dg.schedule(
        name=DAILY_SCHEDULE,
        job=job,
        cron_schedule=DAILY_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Every day at 02:00 UTC: the whole chain for yesterday's UTC day and the {late} days "
            "before it (HEALTH_LATE_DAYS), as one run."
        ),
    )
    def daily_health_refresh(context: dg.ScheduleEvaluationContext, raw_source: RawSource):
        tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        days = refresh_range(tick.astimezone(dt.UTC).date(), late, history_start, tuple(raw_source.stale_days()))
        if days is None:
            return dg.SkipReason(f"yesterday is before the first partition, {history_start}")
        # Keyed on the day refreshed, so a retried tick never launches a second run.
        return dg.RunRequest(run_key=days[1].isoformat(), tags=partition_range_tags(*days))

    return daily_health_refresh
