"""morning_report: the static site a CSM and the CS leader read in the morning.

For the latest HEALTH_REPORT_DAYS days of a run (default 1, so a backfill does not build a site
for every old day), site.py builds `<export dir>/report/<date>/` from the published tables: the
portfolio (index.html), a page per owner, per account and per scored metric. `report/latest`
links the newest; a run of earlier days, which rescored the later ones, builds the newest again.
`health-pipeline report --date D` builds one for any scored day.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb

from health_pipeline import settings
from health_pipeline.assets import daily_asset, record_refreshed
from health_pipeline.assets.score_backtest.asset import BACKTEST_ASSETS
from health_pipeline.assets.sync_export.asset import newest_scored_day
from health_pipeline.partitions import date_range
from health_pipeline.resources import ExportTarget, Warehouse
from health_pipeline.scorecard.model import HealthConfig

from .site import Site, build_report, page_url


def report_dates(first_day: dt.date, last_day: dt.date, days: int) -> list[dt.date]:
    """The run's latest `days` days, oldest first."""
    start = max(first_day, last_day - dt.timedelta(days=days - 1))
    return [start + dt.timedelta(days=i) for i in range((last_day - start).days + 1)] if days else []


def site_metadata(sites: list[Site], days: int) -> dict[str, dg.MetadataValue]:
    base_url = settings.report_base_url()
    meta = {
        "report_days": dg.MetadataValue.int(days),
        "reports_built": dg.MetadataValue.text(", ".join(str(site.report_date) for site in sites) or "none"),
    }
    if sites:
        newest = sites[-1]
        meta.update({
            "report": dg.MetadataValue.path(str(newest.index)),
            # Browsers refuse a file:// link from a web page (the UI): a served site's address opens.
            "report_url": dg.MetadataValue.url(page_url(base_url, newest.report_date) if base_url
                                               else newest.index.as_uri()),
            "pages": dg.MetadataValue.int(newest.pages),
            "size_mb": dg.MetadataValue.float(round(newest.size_bytes / 1e6, 2)),
            "build_seconds": dg.MetadataValue.float(round(newest.seconds, 2)),
        })
    return meta


def _build(context: dg.AssetExecutionContext, conn: duckdb.DuckDBPyConnection, config: HealthConfig,
           export_dir: Path, days: list[dt.date]) -> list[Site]:
    """The sites of `days`, skipping (with a warning) a day on which no account was scored."""
    sites = []
    for day in days:
        site = build_report(conn, config, day, export_dir)
        if site is None:
            context.log.warning(f"no account was scored on {day}: no morning report for it")
        else:
            sites.append(site)
    return sites


def build_morning_report(config: HealthConfig) -> dg.AssetsDefinition:
    @daily_asset(
        name="morning_report",
        # contact_history: a contact's role on the day says who is a power contact.
        deps=["sync_export", "contact_usage", "band_changes", "contact_history", *BACKTEST_ASSETS],
        kinds={"html"},
        code_version=config.scoring_version,
    )
    def morning_report(
        context: dg.AssetExecutionContext, warehouse: Warehouse, export_target: ExportTarget
    ):
        """One static site per snapshot date D, for the latest HEALTH_REPORT_DAYS days of the run:
        `<export dir>/report/D/index.html` is the portfolio (bands and their change, ARR at risk,
        breakdowns by segment, vertical, plan and owner, onboarding, the backtest), linking a page
        per owner (the day's moves, drops, at-risk accounts and a card per account), per account
        (90 days of score and components, contacts, band changes) and per scored metric (its
        distribution and the bin edges). `report/latest` links the newest D, whose site a run of
        earlier days builds again (recorded on D's partition), since that run rescored it.
        """
        first_day, last_day = date_range(context.partition_time_window)
        days, export_dir = settings.report_days(), Path(export_target.export_dir)
        with warehouse.get_connection() as conn:
            sites = _build(context, conn, config, export_dir, report_dates(first_day, last_day, days))
            # A run of earlier days rescored every later day the warehouse holds
            # (assets.refreshed_through), so the newest day's site, which report/latest links, is stale.
            newest = newest_scored_day(conn)
            stale = [newest] if days and newest and newest > last_day else []
            refreshed = _build(context, conn, config, export_dir, stale)
        yield dg.MaterializeResult(metadata=site_metadata(sites, days))
        record_refreshed(context, {site.report_date.isoformat(): site_metadata([site], days) for site in refreshed})

    return morning_report
