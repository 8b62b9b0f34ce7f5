"""band_changes: the accounts whose health band moved since the day before, a CSM's morning list."""

from pathlib import Path

import dagster as dg

from health_pipeline.assets import change_params, daily_asset, materialized, publish_export
from health_pipeline.partitions import date_range
from health_pipeline.resources import ExportTarget, Warehouse
from health_pipeline.scorecard.model import BANDS, HealthConfig
from health_pipeline.sql import SqlFolder

SQL = SqlFolder(__file__)


def band_changes_sql(config: HealthConfig) -> str:
    return SQL.render("band_changes", config=config)


def build_band_changes(config: HealthConfig) -> dg.AssetsDefinition:
    @daily_asset(
        name="band_changes",
        deps=["account_health", "account_history", "outcomes"],
        kinds={"duckdb", "parquet", "csv"},
        code_version=config.scoring_version,
    )
    def band_changes(
        context: dg.AssetExecutionContext, warehouse: Warehouse, export_target: ExportTarget
    ):
        """One row per account whose health band on D differs from its band on D-1: a CSM's morning list.

        from_band -> to_band with direction (worse or better), the account's owner, segment,
        score and 7-day delta, what changed since the day before and since 7 days before (the
        onboarding's end, activation colours, the components whose points moved most, with their
        values before and after), top_drag and score_reason. In export.band_changes (keyed on
        account_id, snapshot_date) and as HEALTH_EXPORT_DIR/band_changes/snapshot_date=D.parquet|csv,
        one file per day even when nothing moved.
        """
        first_day, last_day = date_range(context.partition_time_window)
        with warehouse.get_connection() as conn:
            meta = yield from publish_export(
                conn, config, "band_changes", "band_changes", "account_id", band_changes_sql(config),
                Path(export_target.export_dir), first_day, last_day, {"bands": list(BANDS), **change_params(config)},
                # Only days with a move have rows: the scores say which later days exist.
                days_of="core.account_health", figures_by=("direction", "moved_"),
            )
        yield from materialized(context, meta)

    return band_changes
