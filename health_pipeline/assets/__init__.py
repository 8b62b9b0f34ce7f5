"""One folder per asset, named after it, holding its module (asset.py) and the .sql files it runs."""

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb

from health_pipeline.checks import AuditContext, audit
from health_pipeline.export_files import (
    discard,
    export_params,
    files_metadata,
    move_into_place,
    remove_orphaned_staging,
    staging_dir,
    write_snapshot_files,
)
from health_pipeline.partitions import daily_partitions
from health_pipeline.publish import stage_range, swap_range, table_metadata, transaction
from health_pipeline.resources import Warehouse
from health_pipeline.scorecard.model import HealthConfig

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


def publish_range(conn: duckdb.DuckDBPyConnection, config: HealthConfig, asset: str, table: str, date_column: str,
                  first_day: dt.date, last_day: dt.date, select_sql: str, params: dict, batch_days: int | None = None):
    """Write, audit, publish one table's range: compute it into a staging table, swap it in, run
    the asset's checks on it, and commit only if they pass. Yields the check results; returns the
    table's metadata. Use as `meta = yield from publish_range(...)`."""
    staging = stage_range(conn, table, first_day, last_day, select_sql, params, batch_days)
    with transaction(conn, {table: staging}):
        rows = swap_range(conn, table, date_column, first_day, last_day, staging)
        yield from audit(config, asset, conn, first_day, last_day)
    return table_metadata(conn, table, rows)


def publish_export(conn: duckdb.DuckDBPyConnection, config: HealthConfig, asset: str, name: str, key: str,
                   select_sql: str, export_dir: Path, first_day: dt.date, last_day: dt.date,
                   params: dict | None = None):
    """Write, audit, publish export.<name> and its files together: the range's rows are swapped in
    and its files written to a staging folder, both are audited, and only after the commit do the
    files move into place. A failure anywhere leaves the table and the files as they were.
    Yields the check results; returns the metadata."""
    table = f"export.{name}"
    staging = stage_range(conn, table, first_day, last_day, select_sql,
                          {**export_params(first_day, last_day), **(params or {})})
    remove_orphaned_staging(export_dir)
    staged = staging_dir(export_dir)
    try:
        with transaction(conn, {table: staging}):
            rows = swap_range(conn, table, "snapshot_date", first_day, last_day, staging)
            write_snapshot_files(conn, table, key, staged / name, first_day, last_day)
            yield from audit(config, asset, conn, first_day, last_day, AuditContext(export_dir=staged))
        files = move_into_place(staged, export_dir)
    finally:
        discard(staged)
    return {**table_metadata(conn, table, rows), **files_metadata(export_dir / name, files)}
