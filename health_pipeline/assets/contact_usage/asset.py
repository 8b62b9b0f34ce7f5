"""contact_usage: the per-contact companion of the sync table, for CS tools that show contacts."""

from pathlib import Path

import dagster as dg

from health_pipeline.assets import daily_asset, materialized, publish_export
from health_pipeline.partitions import date_range
from health_pipeline.resources import ExportTarget, Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sql import SqlFolder

SQL = SqlFolder(__file__)


def build_contact_usage(config: HealthConfig) -> dg.AssetsDefinition:
    @daily_asset(
        name="contact_usage",
        deps=["contact_metrics", "account_history", "outcomes"],
        kinds={"duckdb", "parquet", "csv"},
        code_version=config.metrics_version,
    )
    def contact_usage(
        context: dg.AssetExecutionContext, warehouse: Warehouse, export_target: ExportTarget
    ):
        """One row per counted contact per snapshot date, in export.contact_usage, keyed on (user_id,
        snapshot_date): user_id, account_id, the account's crm_account_id, identity and the per-contact
        metrics. Also written as HEALTH_EXPORT_DIR/contact_usage/snapshot_date=YYYY-MM-DD.parquet|csv.
        """
        first_day, last_day = date_range(context.partition_time_window)
        with warehouse.get_connection() as conn:
            meta = yield from publish_export(
                conn, config, "contact_usage", "contact_usage", "user_id", SQL.render("contact_usage", config=config),
                Path(export_target.export_dir), first_day, last_day,
            )
        yield from materialized(context, meta)

    return contact_usage
