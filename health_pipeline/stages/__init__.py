"""One module per pipeline stage, in the order data flows through them."""

import dagster as dg

from health_pipeline.partitions import daily_partitions
from health_pipeline.warehouse import Warehouse


def stage_asset(**kwargs):
    """`dg.asset` with what every stage shares.

    Daily UTC partitions; one run for any backfill range, because each stage computes a range
    in set-based SQL; the `health` group; and the warehouse pool, so writers queue for DuckDB's
    single-writer lock instead of failing on it.
    """
    return dg.asset(
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="health",
        pool=Warehouse.POOL,
        **kwargs,
    )
