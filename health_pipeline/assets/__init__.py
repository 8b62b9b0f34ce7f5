"""One folder per asset, named after it, holding its module (asset.py) and the .sql files it runs;
here, what every daily asset shares, the write-audit-publish helpers they all write through, the
days of the fact's history that no run extracted (unextracted_days), and the names _shared.sql's
what_changed writes (change_params)."""

import datetime as dt
from collections.abc import Callable
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
from health_pipeline.publish import PER_DAY, stage_range, swap_range, table_metadata, transaction
from health_pipeline.raw_input import RawInputError
from health_pipeline.resources import Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sources import RawSource
from health_pipeline.sql import SqlFolder, scalar, table_exists

SQL = SqlFolder(__file__)

GROUP = "health"


def change_params(config: HealthConfig) -> dict:
    """What _shared.sql's what_changed binds: each component's name and the metric it bins (or
    'value' where segments bin different metrics under one name), and each onboarding measure's name."""
    metrics: dict[str, set[str]] = {}
    for segment in config.segments:
        for component in segment.scorecard.components:
            metrics.setdefault(component.name, set()).add(component.metric)
    return {
        **{f"change_component_{i}": name for i, name in enumerate(config.components)},
        **{f"change_metric_{i}": min(metrics[name]) if len(metrics[name]) == 1 else "value"
           for i, name in enumerate(config.components)},
        **{f"change_measure_{i}": measure.name for i, measure in enumerate(config.onboarding.measures)},
    }


def daily() -> dict:
    """What every daily asset shares: daily UTC partitions; one run for any backfill range, because
    each asset computes a range in set-based SQL; the group; and the warehouse pool, so writers
    queue for DuckDB's single-writer lock instead of failing on it."""
    return dict(
        partitions_def=daily_partitions(),
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        pool=Warehouse.POOL,
    )


def daily_asset(**kwargs):
    """`dg.asset` with what every daily asset shares (`daily`)."""
    return dg.asset(**daily(), **kwargs)


def refreshed_through(conn: duckdb.DuckDBPyConnection, table: str, last_day: dt.date) -> dt.date:
    """The last snapshot date a windowed asset recomputes when it runs up to `last_day`: every day
    after it that the table already holds. The 28- and 90-day windows reach 89 days on, and a
    contact's first session and last activity (`older_history` in contact_metrics.sql) reach every
    later day, so a re-run of an earlier day reaches every day it affects, whatever the order."""
    if not table_exists(conn, table):
        return last_day
    latest = scalar(conn, f"SELECT max(snapshot_date) FROM {table} WHERE snapshot_date > $after",
                    {"after": last_day})
    return latest or last_day


class IncompleteHistory(Exception):
    """A windowed asset would read days of the fact that no run extracted; nothing was published."""


def unextracted_days(conn: duckdb.DuckDBPyConnection, raw: RawSource,
                     through: dt.date) -> list[tuple[dt.date, dt.date]]:
    """The spans of days up to `through` that the fact's history lacks: days that no accepted run
    of raw_activity processed (raw.history_runs), from the first partition or the raw events'
    first day, whichever is later.

    The history must be whole, not only the 89 days of the windows: a contact's first session and
    last activity (first_session_activated_share, days_since_last_active) are over every earlier
    day. It starts at the first partition, because no run can process a day before it (a later
    HEALTH_PARTITIONS_START bounds the history on purpose), and at the raw events' first day
    (isolated days aside), because the export has nothing before it. A declared known gap is held
    once a run has processed it, like any day. The raw files' footers are read only when some day
    is unprocessed; unreadable raw files leave every unprocessed day missing."""
    first_partition = daily_partitions().start.date()
    if not table_exists(conn, "raw.history_runs"):
        spans = [(first_partition, through)] if first_partition <= through else []
    else:
        spans = SQL.run(conn, "unprocessed_days", {"first_day": first_partition, "last_day": through}).fetchall()
    if not spans:
        return []
    try:
        data = raw.event_days()
    except (RawInputError, duckdb.Error):
        return spans
    if data is None:
        return []
    return [(max(first, data.first), last) for first, last in spans if last >= data.first]


def describe_spans(spans: list[tuple[dt.date, dt.date]], most: int = 5) -> str:
    """Spans of days as text: '2026-06-01 .. 2026-06-04, 2026-06-09', the first `most` of them."""
    shown = [f"{first}" if first == last else f"{first} .. {last}" for first, last in spans[:most]]
    return ", ".join(shown) + (f" and {len(spans) - most} more spans" if len(spans) > most else "")


def publish_range(conn: duckdb.DuckDBPyConnection, config: HealthConfig, asset: str, table: str, date_column: str,
                  first_day: dt.date, last_day: dt.date, select_sql: str, params: dict,
                  batch_plan: Callable[[duckdb.DuckDBPyConnection, dt.date, dt.date], dict] | None = None,
                  windowed: bool = False, figures_by: tuple[str, str] | None = None):
    """Write, audit, publish one table's range: compute it into a staging table, swap it in, run
    the asset's checks on it, and commit only if they pass. A `windowed` asset also recomputes the
    later days its windows tie to the range (`refreshed_through`). `batch_plan(conn, first, last)`
    (publish.plan_batches) cuts the computed days into batches, and its figures join the metadata.
    Each day written gets its rows as its figures, and with `figures_by` (a column and a prefix)
    its rows per value of that column. Yields the check results; returns the table's metadata
    (`meta = yield from ...`), which `materialized` records."""
    through = refreshed_through(conn, table, last_day) if windowed else last_day
    plan = batch_plan(conn, first_day, through) if batch_plan else {}
    staging = stage_range(conn, table, first_day, through, select_sql,
                          {**params, "first_day": first_day, "last_day": through}, plan.get("batch_days"))
    with transaction(conn, {table: staging}):
        rows = swap_range(conn, table, date_column, first_day, through, staging)
        yield from audit(config, asset, conn, first_day, through)
    return {**table_metadata(conn, table, rows, (date_column, first_day, through, *(figures_by or ())),
                             refreshed_through=str(through)),
            **plan}


def publish_export(conn: duckdb.DuckDBPyConnection, config: HealthConfig, asset: str, name: str, key: str,
                   select_sql: str, export_dir: Path, first_day: dt.date, last_day: dt.date,
                   params: dict | None = None, days_of: str | None = None,
                   figures_by: tuple[str, str] | None = None):
    """Write, audit, publish export.<name> and its files together: the range's rows are swapped in
    and its files written to a staging folder, both are audited, and only after the commit do the
    files move into place. A failure anywhere leaves the table and the files as they were.
    Like every windowed asset, it also rewrites the later days its windows tie to the range: the
    days that `days_of` holds (a table with a row every day; the export itself unless given).
    Each day written gets its figures as in publish_range (`figures_by`). Yields the check
    results; returns the metadata, which `materialized` records."""
    table = f"export.{name}"
    last_day = refreshed_through(conn, days_of or table, last_day)
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
    return {**table_metadata(conn, table, rows, ("snapshot_date", first_day, last_day, *(figures_by or ())),
                             refreshed_through=str(last_day)),
            **files_metadata(export_dir / name, files)}


# Keys a run's own result renames, since they count the whole run: each partition records its day's.
IN_RUN = {"dagster/row_count": "rows_in_run"}
# What a dated table's run result says that is true of every day of the run.
EVERY_DAY = ("dagster/column_schema", "dagster/table_name")
# On the record of another day a run rewrote: the run's last day, and a link to the run.
REFRESHED_BY = "refreshed_by_the_run_of"
REFRESHED_BY_RUN = "refreshed_by_run"


def materialized(context: dg.AssetExecutionContext, metadata: dict, asset_key: str | None = None):
    """The run's MaterializeResult, which Dagster records on every partition of the run's range,
    then a record of each other day the run rewrote (a windowed asset's refreshed days, the days
    raw_activity extracted before or after the range; see `record_refreshed`).

    For a dated table (one with `per_day`, from publish.table_metadata) each of those records
    holds that day's own `dagster/row_count` and figures. The run's records also hold the run's
    totals under their own names (`rows_in_run`, `<figure>_in_run`, over every day it wrote) and
    the table's schema and name; its other metadata (its batch plan, counts it has no day's split
    of, files written, the previews of its last day) goes on its last day's record only, which
    for a one-day run is the whole run.

    The day's figures go on the record Dagster writes anyway (`add_asset_metadata`), not on a
    second materialization per partition: every event is a write to the instance's storage."""
    per_day = metadata.get(PER_DAY)
    if per_day is None:
        yield dg.MaterializeResult(asset_key=asset_key, metadata=metadata)
        return
    days = per_day.value
    figures = sorted({name for day in days.values() for name in day} - {"rows"})
    totals = {IN_RUN[key]: metadata[key] for key in IN_RUN if key in metadata} | {
        f"{name}_in_run": dg.MetadataValue.int(sum(day.get(name, 0) for day in days.values())) for name in figures}
    of_the_run = {key: value for key, value in metadata.items()
                  if key not in IN_RUN and key not in EVERY_DAY and key != PER_DAY}
    last = max(context.partition_keys)

    def own(partition: str) -> dict:
        return {"dagster/row_count" if name == "rows" else name: dg.MetadataValue.int(n)
                for name, n in days.get(partition, {"rows": 0}).items()}

    for partition in context.partition_keys:
        context.add_asset_metadata({**own(partition), **(of_the_run if partition == last else {})},
                                   asset_key=asset_key, partition_key=partition)
    yield dg.MaterializeResult(asset_key=asset_key, metadata={
        **{key: metadata[key] for key in EVERY_DAY if key in metadata}, **totals})
    record_refreshed(context, {partition: own(partition)
                               for partition in sorted(set(days) - set(context.partition_keys))}, asset_key)


def record_refreshed(context: dg.AssetExecutionContext, days: dict[str, dict], asset_key: str | None = None) -> None:
    """Record each other day the run rewrote (`days`: its partition and its own figures) as a
    materialization of that partition of `asset_key` (else the context's asset), naming the run's
    last day (`refreshed_by_the_run_of`) and linking the run (`refreshed_by_run`). Call it after
    the run's own result was yielded, which Dagster has recorded by then.

    Each carries the lineage tags Dagster recorded on the run's last day (code version, data
    version, the inputs' versions): the day was computed by the same code from the same inputs,
    so the UI's "Unsynced" judges it by the scorecard that actually scored it.

    They are reported beside the run, not by it: Dagster counts every materialization a
    backfill's run records as a partition the backfill did, so three days that refreshed fourteen
    later ones showed 566% completed. An AssetObservation would not count, but Dagster judges
    staleness by materializations alone, so a day rescored by a later scorecard would stay
    "Unsynced" and show its old figures."""
    if not days:
        return
    key = dg.AssetKey(asset_key) if asset_key else context.asset_key
    last = max(context.partition_keys)
    [run_record] = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[last]), limit=1).records
    lineage = run_record.asset_materialization.tags
    by_the_run = {REFRESHED_BY: last, REFRESHED_BY_RUN: dg.MetadataValue.dagster_run(context.run.run_id)}
    for partition, metadata in days.items():
        context.instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=key, partition=partition, tags=lineage, metadata={**metadata, **by_the_run}))
