"""The one daily partitioning every asset shares: a UTC day per partition."""

import datetime as dt
import os

import dagster as dg

from health_pipeline.sample import SAMPLE_START


def partitions_start() -> str:
    value = os.environ.get("HEALTH_PARTITIONS_START", SAMPLE_START.isoformat())
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"HEALTH_PARTITIONS_START={value!r} is not a YYYY-MM-DD date") from None
    return value


daily_partitions = dg.DailyPartitionsDefinition(start_date=partitions_start(), timezone="UTC")


def partition_range_tags(first_day: dt.date, last_day: dt.date) -> dict[str, str]:
    """Dagster's run tags for a single run over a range of partitions (as the UI sets them)."""
    return {
        "dagster/asset_partition_range_start": first_day.isoformat(),
        "dagster/asset_partition_range_end": last_day.isoformat(),
    }
