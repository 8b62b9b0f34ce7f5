"""The Dagster code location: the pipeline's assets, one module per stage, on shared daily
partitions, their blocking checks, and the daily schedule that refreshes them."""

from __future__ import annotations

import warnings

import dagster as dg

from health_pipeline.checks import build_checks
from health_pipeline.config import Settings, load_settings
from health_pipeline.resources import default_resources
from health_pipeline.schedules import EXPORT_FRESHNESS, build_daily_schedule, late_days
from health_pipeline.stages.account_rollup import build_account_metrics
from health_pipeline.stages.activity import build_daily_contact_activity
from health_pipeline.stages.contact_metrics import build_contact_metrics
from health_pipeline.stages.export import build_band_changes, build_sync_export
from health_pipeline.stages.extract import build_raw_activity
from health_pipeline.stages.scoring import build_account_health

HEALTH_JOB = "health_job"

# Single-run backfills are the point of this pipeline; Dagster flags the parameter as beta.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)


def build_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    return [
        build_raw_activity(settings),
        build_daily_contact_activity(settings),
        build_contact_metrics(settings),
        build_account_metrics(settings),
        build_account_health(settings),
        build_sync_export(settings),
        build_band_changes(settings),
    ]


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    health_job = dg.define_asset_job(
        HEALTH_JOB,
        selection=dg.AssetSelection.groups("health"),
        description="Every stage, from raw extraction to the sync table, for the selected days.",
    )
    return dg.Definitions(
        assets=[_with_policies(asset) for asset in build_assets(settings)],
        asset_checks=build_checks(settings),
        jobs=[health_job],
        schedules=[build_daily_schedule(health_job, late_days())],
        resources=default_resources(),
        # One process runs the whole chain: the stages are sequential SQL on one DuckDB file,
        # so a process per step would only add start-up time and lock contention.
        executor=dg.in_process_executor,
    )


def _with_policies(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """Operational policies, applied where the code location is assembled rather than in each stage."""
    if asset.key == dg.AssetKey("sync_export"):
        return asset.map_asset_specs(lambda spec: dg.apply_freshness_policy(spec, EXPORT_FRESHNESS))
    return asset


defs = build_defs()
