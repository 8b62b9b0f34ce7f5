"""The Dagster code location: the pipeline's assets (one folder each under assets/, each with its
blocking checks), on shared daily partitions, and the daily schedule that refreshes them."""

from __future__ import annotations

import warnings

import dagster as dg

from health_pipeline import settings
from health_pipeline.assets import GROUP
from health_pipeline.assets.account_health.asset import build_account_health
from health_pipeline.assets.account_metrics.asset import build_account_metrics
from health_pipeline.assets.alerts.asset import build_alerts
from health_pipeline.assets.band_changes.asset import build_band_changes
from health_pipeline.assets.contact_metrics.asset import build_contact_metrics
from health_pipeline.assets.contact_usage.asset import build_contact_usage
from health_pipeline.assets.morning_report.asset import build_morning_report
from health_pipeline.assets.postgres_sync.asset import build_postgres_sync
from health_pipeline.assets.raw_activity.asset import build_raw_activity
from health_pipeline.assets.score_backtest.asset import build_score_backtest
from health_pipeline.assets.sync_export.asset import build_sync_export
from health_pipeline.progress import progress_logger
from health_pipeline.resources import default_resources
from health_pipeline.schedules import EXPORT_FRESHNESS, build_daily_schedule
from health_pipeline.scorecard.model import HealthConfig

HEALTH_JOB = "health_job"

# Single-run backfills are the point of this pipeline; Dagster flags the parameter as beta.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)


def build_assets(config: HealthConfig) -> list[dg.AssetsDefinition]:
    """Every asset, in the order a day's data flows through them."""
    return [
        build_raw_activity(config),
        build_contact_metrics(config),
        build_account_metrics(config),
        build_account_health(config),
        build_sync_export(config),
        build_contact_usage(config),
        build_band_changes(config),
        build_alerts(config),
        build_score_backtest(config),
        build_morning_report(config),
        build_postgres_sync(),
    ]


def build_defs(config: HealthConfig | None = None) -> dg.Definitions:
    # Every setting and the scorecard are parsed before anything is built: a bad one stops the
    # load with every problem listed, one line each, and nothing is written.
    loaded, config = settings.load_with_scorecard() if config is None else (settings.load(), config)
    health_job = dg.define_asset_job(
        HEALTH_JOB,
        selection=dg.AssetSelection.groups(GROUP),
        description="Every stage, from raw extraction to the sync table, for the selected days, then the "
                    "backtest over all of history, then the morning report of the latest days.",
    )
    return dg.Definitions(
        assets=[_with_policies(asset) for asset in build_assets(config)],
        jobs=[health_job],
        schedules=[build_daily_schedule(health_job, loaded.late_days)],
        resources=default_resources(),
        # Runs use Dagster's console log unless their run config picks a logger; the CLI picks
        # `progress` (one line per stage) and adds `console` with --debug.
        loggers={"console": dg.colored_console_logger, "progress": progress_logger},
        # One process runs the whole chain: the assets are sequential SQL on one DuckDB file,
        # so a process per step would only add start-up time and lock contention.
        executor=dg.in_process_executor,
    )


def _with_policies(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """Operational policies, applied where the code location is assembled rather than in each asset."""
    if dg.AssetKey("sync_export") in asset.keys:
        return asset.map_asset_specs(lambda spec: dg.apply_freshness_policy(spec, EXPORT_FRESHNESS))
    return asset


defs = build_defs()
