"""The one daily partitioning every asset shares: a UTC day per partition."""

import datetime as dt

import dagster as dg

from health_pipeline import settings


def daily_partitions() -> dg.DailyPartitionsDefinition:
    """The daily partitions, from settings.partitions_start. Built with the definitions, not when a
    module is imported, so a bad setting is one line among the settings' problems, never a traceback
    from an import."""
    return dg.DailyPartitionsDefinition(start_date=settings.load().partitions_start, timezone="UTC")


def date_range(window: dg.TimeWindow) -> tuple[dt.date, dt.date]:
    """The first and last UTC day (both inclusive) of a daily partition window."""
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()


def partition_range_tags(first_day: dt.date, last_day: dt.date) -> dict[str, str]:
    """Dagster's run tags for a single run over a range of partitions (as the UI sets them)."""
    return {
        "dagster/asset_partition_range_start": first_day.isoformat(),
        "dagster/asset_partition_range_end": last_day.isoformat(),
    }
