"""One folder per asset, named after it, holding its module (asset.py) and the .sql files it runs."""

import dagster as dg

from health_pipeline.partitions import daily_partitions
from health_pipeline.resources import Warehouse

GROUP = "health"
# What every daily asset shares: daily UTC partitions; one run for any backfill range, because
# each asset computes a range in set-based SQL; the group; and the warehouse pool, so writers
# queue for DuckDB's single-writer lock instead of failing on it.
DAILY = dict(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    pool=Warehouse.POOL,
)


def daily_asset(**kwargs):
    """`dg.asset` with what every daily asset shares (DAILY)."""
    return dg.asset(**DAILY, **kwargs)
