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
