"""Stage f: the sync table that CS tools (Catalyst, Gainsight, Salesforce) import.

Two keyed snapshots are written, to DuckDB and as one parquet and one CSV file per snapshot
date: export.account_health on (account_id, snapshot_date) and export.contact_usage on
(user_id, snapshot_date). A CS tool upserts on those keys, so re-importing a day is safe.
"""


import datetime as dt
import os
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from health_pipeline.config import Settings
from health_pipeline.resources import ExportTarget
from health_pipeline.stages import stage_asset
from health_pipeline.stages.contact_metrics import event_metric_column
from health_pipeline.warehouse import Warehouse, counts_by, date_range, quote, write_range


def account_health_export_sql(settings: Settings) -> str:
    metrics = ", ".join(f"m.{quote(metric)}" for metric in settings.account_metrics)
    return f"""
        SELECT a.account_id, a.name AS account_name, a.owner, a.plan, a.status, a.arr, a.vertical,
               a.customer_since, h.* EXCLUDE (account_id, scorecard_version), {metrics},
               $computed_at::TIMESTAMP AS computed_at, h.scorecard_version
        FROM core.account_health h
        JOIN core.account_metrics m ON m.account_id = h.account_id AND m.snapshot_date = h.snapshot_date
        JOIN raw.accounts a ON a.account_id = h.account_id
        WHERE h.snapshot_date BETWEEN $first_day AND $last_day
    """


BAND_CHANGES_SQL = """
    SELECT h.account_id, a.name AS account_name, a.owner, h.snapshot_date, h.segment,
           h.previous_band AS from_band, h.health_band AS to_band,
           CASE WHEN list_position(['healthy', 'neutral', 'at_risk'], h.health_band)
                     > list_position(['healthy', 'neutral', 'at_risk'], h.previous_band)
                THEN 'worse' ELSE 'better' END AS direction,
           h.band_source, h.health_score, h.previous_score_7d, h.score_delta_7d,
           h.top_drag, h.score_reason, $computed_at::TIMESTAMP AS computed_at, h.scorecard_version
    FROM core.account_health h JOIN raw.accounts a ON a.account_id = h.account_id
    WHERE h.snapshot_date BETWEEN $first_day AND $last_day AND h.band_changed
"""


def contact_usage_export_sql(settings: Settings) -> str:
    events = ", ".join(quote(event_metric_column(e)) for e in settings.tracked_events)
    return f"""
        SELECT user_id, snapshot_date, account_id, identity,
               sessions_28d, sessions_90d, active_days_28d, {events},
               usage_28d, usage_prev_28d, usage_90d, kpi_28d, last_seen_at,
               $computed_at::TIMESTAMP AS computed_at
        FROM core.contact_metrics
        WHERE snapshot_date BETWEEN $first_day AND $last_day
    """


def write_atomically(table: pa.Table, path: Path) -> None:
    """Write a file so readers see the old one or the whole new one, never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix == ".parquet":
            pq.write_table(table, tmp)
        else:
            pa_csv.write_csv(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_orphaned_temp_files(out_dir: Path) -> None:
    """Delete the temp files of writers killed mid-write (a SIGKILL skips write_atomically's cleanup)."""
    for tmp in out_dir.glob(".snapshot_date=*.tmp"):
        try:
            os.kill(int(tmp.suffixes[-2][1:]), 0)  # the writer's pid, from write_atomically's name
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, and another user's


def write_snapshot_files(
    conn: duckdb.DuckDBPyConnection, table: str, key: str, out_dir: Path, first_day: dt.date, last_day: dt.date
) -> int:
    """One parquet and one CSV file per snapshot date: <out_dir>/snapshot_date=YYYY-MM-DD.*"""
    remove_orphaned_temp_files(out_dir)
    day, files = first_day, 0
    while day <= last_day:
        rows = conn.sql(
            f"SELECT * FROM {table} WHERE snapshot_date = ? ORDER BY {quote(key)}", params=[day]
        ).to_arrow_table()
        for suffix in (".parquet", ".csv"):
            write_atomically(rows, out_dir / f"snapshot_date={day.isoformat()}{suffix}")
            files += 1
        day += dt.timedelta(days=1)
    return files


def export_params(first_day: dt.date, last_day: dt.date) -> dict:
    return {"first_day": first_day, "last_day": last_day, "computed_at": dt.datetime.now(dt.UTC).replace(tzinfo=None)}


def build_sync_export(settings: Settings) -> dg.AssetsDefinition:
    @stage_asset(
        name="sync_export",
        deps=["account_health", "contact_metrics"],
        kinds={"duckdb", "parquet", "csv"},
        code_version=settings.scoring_version,
    )
    def sync_export(
        context: dg.AssetExecutionContext, warehouse: Warehouse, export_target: ExportTarget
    ) -> dg.MaterializeResult:
        """The sync table: one row per non-churned account per snapshot date, in export.account_health.

        Each row carries the account's attributes, every column of core.account_health (segment,
        score, band, activation, explanations, trend), every per-account metric under its
        documented name, computed_at (UTC) and scorecard_version. export.contact_usage carries the
        per-contact metrics on (user_id, snapshot_date). Both are also written as files under
        HEALTH_EXPORT_DIR: account_health/ and contact_usage/snapshot_date=YYYY-MM-DD.parquet|csv.
        """
        first_day, last_day = date_range(context.partition_time_window)
        params = export_params(first_day, last_day)
        out = Path(export_target.export_dir)
        with warehouse.get_connection() as conn:
            contacts = write_range(
                conn, "export.contact_usage", "snapshot_date", first_day, last_day,
                contact_usage_export_sql(settings), params,
            )
            meta = write_range(
                conn, "export.account_health", "snapshot_date", first_day, last_day,
                account_health_export_sql(settings), params,
            )
            files = sum(
                write_snapshot_files(conn, f"export.{name}", key, out / name, first_day, last_day)
                for name, key in (("contact_usage", "user_id"), ("account_health", "account_id"))
            )
            meta.update(
                contact_usage_rows=contacts["dagster/row_count"],
                files_written=dg.MetadataValue.int(files),
                export_dir=dg.MetadataValue.path(str(out.resolve())),
            )
        return dg.MaterializeResult(metadata=meta)

    return sync_export


def build_band_changes(settings: Settings) -> dg.AssetsDefinition:
    @stage_asset(
        name="band_changes",
        deps=["account_health"],
        kinds={"duckdb", "parquet", "csv"},
        code_version=settings.scoring_version,
    )
    def band_changes(
        context: dg.AssetExecutionContext, warehouse: Warehouse, export_target: ExportTarget
    ) -> dg.MaterializeResult:
        """One row per account whose health band on D differs from its band on D-1: a CSM's morning list.

        from_band -> to_band with direction (worse or better), the account's owner, segment,
        score and 7-day delta, top_drag and score_reason. In export.band_changes (keyed on
        account_id, snapshot_date) and as HEALTH_EXPORT_DIR/band_changes/snapshot_date=D.parquet|csv,
        one file per day even when nothing moved.
        """
        first_day, last_day = date_range(context.partition_time_window)
        out = Path(export_target.export_dir) / "band_changes"
        with warehouse.get_connection() as conn:
            meta = write_range(
                conn, "export.band_changes", "snapshot_date", first_day, last_day,
                BAND_CHANGES_SQL, export_params(first_day, last_day),
            )
            moves = counts_by(conn, "export.band_changes", "direction", first_day, last_day)
            meta.update({f"moved_{direction}": n for direction, n in moves.items()})
            files = write_snapshot_files(conn, "export.band_changes", "account_id", out, first_day, last_day)
            meta.update(files_written=dg.MetadataValue.int(files), export_dir=dg.MetadataValue.path(str(out.resolve())))
        return dg.MaterializeResult(metadata=meta)

    return band_changes
