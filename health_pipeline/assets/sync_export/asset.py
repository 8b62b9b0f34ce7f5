"""sync_export: the sync table that CS tools (Catalyst, Gainsight, Salesforce) import.

Written to export.account_health, keyed on (account_id, snapshot_date), and as one parquet and
one CSV file per snapshot date. A CS tool upserts on that key, so re-importing a day is safe.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb

from health_pipeline.assets import daily_asset, materialized, publish_export
from health_pipeline.checks import check_specs
from health_pipeline.partitions import date_range
from health_pipeline.resources import ExportTarget, Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sql import SqlFolder, scalar

SQL = SqlFolder(__file__)


def newest_scored_day(conn: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The newest snapshot date of the sync table."""
    return scalar(conn, "SELECT max(snapshot_date) FROM export.account_health")


def build_sync_export(config: HealthConfig) -> dg.AssetsDefinition:
    @daily_asset(
        name="sync_export",
        deps=["account_health", "account_metrics", "account_history", "outcomes"],
        kinds={"duckdb", "parquet", "csv"},
        code_version=config.scoring_version,
        check_specs=check_specs(config, "sync_export"),
    )
    def sync_export(
        context: dg.AssetExecutionContext, warehouse: Warehouse, export_target: ExportTarget
    ):
        """The sync table: one row per scored account per snapshot date, in export.account_health.

        Each row carries the account's attributes, every column of core.account_health (segment,
        score, band, activation, explanations, trend), every per-account metric under its
        documented name, computed_at (UTC) and scorecard_version. Also written as
        HEALTH_EXPORT_DIR/account_health/snapshot_date=YYYY-MM-DD.parquet|csv.
        """
        first_day, last_day = date_range(context.partition_time_window)
        with warehouse.get_connection() as conn:
            meta = yield from publish_export(
                conn, config, "sync_export", "account_health", "account_id", SQL.render("sync_export", config=config),
                Path(export_target.export_dir), first_day, last_day,
            )
        yield from materialized(context, meta)

    return sync_export
