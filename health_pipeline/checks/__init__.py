"""Blocking asset checks: what must hold for the days a run wrote before anything downstream reads them.

Every check is partitioned like the assets, so it checks exactly the range its run materialized,
and blocking, so an ERROR stops the steps after it and no wrong score reaches the sync files.
Each check reports its figures as metadata, shown next to the result in the UI. Checks open the
warehouse read-only, in the same concurrency pool as the writers, because DuckDB does not let a
reader in one process open the file while a writer in another holds it.

Each `check_*` function takes a connection and the days to check and returns the result, so
tests can run it against a warehouse they corrupted on purpose. Their queries are the .sql
files beside this module.
"""

import datetime as dt
import warnings
from functools import partial
from pathlib import Path

import dagster as dg
import duckdb

from health_pipeline.contract import sync_table_columns
from health_pipeline.partitions import daily_partitions, date_range
from health_pipeline.resources import ExportTarget, Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sql import SqlFolder

# The columns every later asset reads from the raw activity tables.
RAW_COLUMNS = {
    "raw.events": ("activity_date", "event_id", "user_id", "session_id", "time", "event_table_name"),
    "raw.sessions": ("activity_date", "session_id", "user_id", "time"),
}
RAW_IDS = {"raw.events": "event_id", "raw.sessions": "session_id"}
# A day without events is expected while a product's tracking starts up; after that it means
# the export is missing a day.
HISTORY_GRACE_DAYS = 7
# Account metrics that are shares of a whole.
SHARE_METRICS = ("breadth_28d", "top_user_share_28d")
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT")
EXAMPLES = 5  # how many offending keys a result lists
SQL = SqlFolder(__file__)

# Checks partitioned like their assets are what let a check see the range its run wrote;
# Dagster 1.13 flags them as preview.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*", category=dg.PreviewWarning)


def _result(failures: int, metadata: dict, severity=dg.AssetCheckSeverity.ERROR, description=None):
    return dg.AssetCheckResult(passed=failures == 0, severity=severity, metadata=metadata, description=description)


def _params(first_day: dt.date, last_day: dt.date) -> dict:
    return {"first_day": first_day, "last_day": last_day}


def check_raw_required_columns(conn: duckdb.DuckDBPyConnection, first_day, last_day) -> dg.AssetCheckResult:
    """raw.events and raw.sessions have every column the later assets read."""
    present = SQL.run(conn, "raw_columns").fetchall()
    missing = [f"{table}.{column}" for table, columns in RAW_COLUMNS.items() for column in columns
               if (table, column) not in present]
    return _result(len(missing), {
        "columns_required": sum(len(c) for c in RAW_COLUMNS.values()),
        "columns_missing": len(missing),
        "missing": ", ".join(missing) or "none",
    })


def check_raw_ids_and_times(conn: duckdb.DuckDBPyConnection, first_day, last_day) -> dg.AssetCheckResult:
    """No raw event or session has a null id, user_id or time."""
    metadata, failures = {}, 0
    for table, id_column in RAW_IDS.items():
        name = table.removeprefix("raw.")
        rows, null_ids, null_users, null_times = SQL.run(
            conn, "raw_ids_and_times", _params(first_day, last_day), table=table, id_column=id_column
        ).fetchall()[0]
        metadata |= {f"{name}_rows": rows, f"{name}_null_{id_column}": null_ids,
                     f"{name}_null_user_id": null_users, f"{name}_null_time": null_times}
        failures += null_ids + null_users + null_times
    return _result(failures, metadata)


def check_raw_ids_unique(conn: duckdb.DuckDBPyConnection, first_day, last_day) -> dg.AssetCheckResult:
    """Deduplication left one row per event_id and per session_id in the days checked."""
    metadata, failures = {}, 0
    for table, id_column in RAW_IDS.items():
        name = table.removeprefix("raw.")
        ids, distinct_ids = SQL.run(
            conn, "raw_ids_unique", _params(first_day, last_day), table=table, id_column=id_column
        ).fetchall()[0]
        metadata |= {f"{name}_ids": ids, f"{name}_duplicate_ids": ids - distinct_ids}
        failures += ids - distinct_ids
    return _result(failures, metadata)


def check_raw_times_in_partition(conn: duckdb.DuckDBPyConnection, first_day, last_day) -> dg.AssetCheckResult:
    """Every raw event and session lies inside the UTC day (partition) it is filed under."""
    metadata, failures = {}, 0
    for table in RAW_IDS:
        name = table.removeprefix("raw.")
        outside, earliest, latest = SQL.run(
            conn, "raw_times_in_partition", _params(first_day, last_day), table=table
        ).fetchall()[0]
        metadata |= {f"{name}_outside_their_day": outside,
                     f"{name}_earliest": str(earliest), f"{name}_latest": str(latest)}
        failures += outside
    metadata["partitions"] = f"{first_day} .. {last_day} (UTC)"
    return _result(failures, metadata)


def check_raw_rows_every_day(
    conn: duckdb.DuckDBPyConnection, first_day, last_day, history_start: dt.date
) -> dg.AssetCheckResult:
    """Every day has raw events: a warning on the first days of history, an error after them."""
    grace_end = history_start + dt.timedelta(days=HISTORY_GRACE_DAYS - 1)
    per_day = SQL.run(conn, "events_per_day", _params(first_day, last_day)).fetchall()
    empty = [day for day, events in per_day if events == 0]
    late_empty = [day for day in empty if day > grace_end]
    metadata = {
        "days_checked": len(per_day),
        "days_without_events": len(empty),
        "empty_days": ", ".join(str(d) for d in empty[:EXAMPLES]) + (" …" if len(empty) > EXAMPLES else "")
        or "none",
        "fewest_events_in_a_day": min((events for _, events in per_day), default=0),
        "events": sum(events for _, events in per_day),
        "first_days_of_history": f"{history_start} .. {grace_end}",
    }
    if empty and not late_empty:
        return _result(len(empty), metadata, severity=dg.AssetCheckSeverity.WARN,
                       description="days without events, all in the first days of history")
    return _result(len(late_empty), metadata,
                   description=f"{len(late_empty)} day(s) after {grace_end} have no events" if late_empty else None)


def check_counts_non_negative(
    conn: duckdb.DuckDBPyConnection, first_day, last_day, table: str
) -> dg.AssetCheckResult:
    """No count (integer column) in the table is negative."""
    columns = [name for name, dtype, *_ in conn.execute(f"DESCRIBE {table}").fetchall() if dtype in INTEGER_TYPES]
    negatives = SQL.run(
        conn, "negative_counts", _params(first_day, last_day), table=table, columns=columns
    ).fetchall()[0]
    rows, per_column = negatives[0], dict(zip(columns, negatives[1:], strict=True))
    offending = {c: n for c, n in per_column.items() if n}
    return _result(sum(offending.values()), {
        "rows_checked": rows,
        "counts_checked": len(columns),
        "negative_values": sum(offending.values()),
        "columns_with_negatives": ", ".join(f"{c} ({n})" for c, n in offending.items()) or "none",
    })


def check_shares_within_0_and_1(conn: duckdb.DuckDBPyConnection, first_day, last_day) -> dg.AssetCheckResult:
    """Breadth and top-user share are within [0, 1] (or null when undefined)."""
    metadata, failures = {}, 0
    for metric in SHARE_METRICS:
        outside, low, high = SQL.run(conn, "share_range", _params(first_day, last_day), metric=metric).fetchall()[0]
        metadata |= {f"{metric}_outside_0_1": outside, f"{metric}_min": low, f"{metric}_max": high}
        failures += outside
    return _result(failures, metadata)


def check_live_accounts_scored_once(conn: duckdb.DuckDBPyConnection, first_day, last_day) -> dg.AssetCheckResult:
    """Every non-churned account has exactly one score per day, and no other account has one."""
    expected, scored, missing, repeated, unexpected, examples = SQL.run(
        conn, "live_accounts_scored_once", {**_params(first_day, last_day), "examples": EXAMPLES}
    ).fetchall()[0]
    return _result(missing + repeated + unexpected, {
        "scores_expected": expected,
        "scores_found": int(scored),
        "accounts_days_missing": missing,
        "accounts_days_scored_twice_or_more": repeated,
        "churned_or_unknown_accounts_scored": unexpected,
        "missing_examples": ", ".join(examples or []) or "none",
    })


def check_scores_within_0_and_100(conn: duckdb.DuckDBPyConnection, first_day, last_day) -> dg.AssetCheckResult:
    """Every health score is a number from 0 to 100."""
    rows, null_scores, outside, low, high = SQL.run(conn, "score_range", _params(first_day, last_day)).fetchall()[0]
    return _result(null_scores + outside, {
        "scores_checked": rows,
        "null_scores": null_scores,
        "scores_outside_0_100": outside,
        "lowest_score": low,
        "highest_score": high,
    })


def _export_files(export_dir: Path, first_day: dt.date, last_day: dt.date) -> tuple[list[str], list[dt.date]]:
    """The sync table's parquet files for the days, and the days that have none."""
    present, missing = [], []
    for offset in range((last_day - first_day).days + 1):
        day = first_day + dt.timedelta(days=offset)
        path = export_dir / "account_health" / f"snapshot_date={day.isoformat()}.parquet"
        if path.is_file():
            present.append(str(path))
        else:
            missing.append(day)
    return present, missing


def check_export_rows_match_scores(
    conn: duckdb.DuckDBPyConnection, first_day, last_day, export_dir: Path
) -> dg.AssetCheckResult:
    """Each day's sync table and sync file have one row per scored account."""
    files, days_without_file = _export_files(export_dir, first_day, last_day)
    file_rows = dict(SQL.run(conn, "sync_file_rows", {"files": files}).fetchall()) if files else {}
    per_day = SQL.run(conn, "sync_rows_per_day", _params(first_day, last_day)).fetchall()
    counts = {day: (scored, exported, file_rows.get(day, 0)) for day, scored, exported in per_day}
    counts |= {day: (0, 0, n) for day, n in file_rows.items() if day not in counts}
    mismatched = sorted({day for day, (scored, exported, in_file) in counts.items()
                         if not scored == exported == in_file} | set(days_without_file))
    return _result(len(mismatched), {
        "scored_rows": sum(c[0] for c in counts.values()),
        "sync_table_rows": sum(c[1] for c in counts.values()),
        "sync_file_rows": sum(c[2] for c in counts.values()),
        "days_without_a_file": len(days_without_file),
        "days_mismatched": len(mismatched),
        "mismatched_days": ", ".join(str(d) for d in mismatched[:EXAMPLES]) or "none",
    })


def check_export_columns_match_contract(
    conn: duckdb.DuckDBPyConnection, first_day, last_day, export_dir: Path, contract: list[str]
) -> dg.AssetCheckResult:
    """The sync table and each of its files have exactly the documented columns, in the documented order."""
    table_columns = [r[0] for r in conn.execute("DESCRIBE export.account_health").fetchall()]
    files, _ = _export_files(export_dir, first_day, last_day)
    bad_files = {}
    for path in files:
        columns = [r[0] for r in conn.execute("DESCRIBE SELECT * FROM read_parquet($path)", {"path": path}).fetchall()]
        if columns != contract:
            bad_files[Path(path).name] = columns
    bad_file_columns = [c for columns in bad_files.values() for c in columns]
    table_ok = table_columns == contract
    return _result((not table_ok) + len(bad_files), {
        "columns_documented": len(contract),
        "sync_table_missing": ", ".join(c for c in contract if c not in table_columns) or "none",
        "sync_table_unexpected": ", ".join(c for c in table_columns if c not in contract) or "none",
        "sync_table_in_documented_order": table_ok,
        "files_checked": len(files),
        "files_not_matching": len(bad_files),
        "files_missing": ", ".join(c for c in contract if any(c not in cols for cols in bad_files.values()))
        or "none",
        "files_unexpected": ", ".join(dict.fromkeys(c for c in bad_file_columns if c not in contract)) or "none",
        "first_file_not_matching": next(iter(sorted(bad_files)), "none"),
    })


def _doc(evaluate) -> str:
    return getattr(evaluate, "func", evaluate).__doc__


def _checks_of(asset: str, evaluations: dict, reads_export_files: bool = False) -> dg.AssetChecksDefinition:
    """One step that runs an asset's checks on one read-only connection (fewer steps, fewer pool claims)."""
    key = dg.AssetKey(asset)
    specs = [dg.AssetCheckSpec(name, asset=key, description=_doc(evaluate), blocking=True,
                               partitions_def=daily_partitions)
             for name, evaluate in evaluations.items()]

    @dg.multi_asset_check(name=f"{asset}_checks", specs=specs, pool=Warehouse.POOL)
    def _checks(context: dg.AssetCheckExecutionContext, warehouse: Warehouse, export_target: ExportTarget):
        days = date_range(context.partition_time_window)
        extra = (Path(export_target.export_dir),) if reads_export_files else ()
        with warehouse.get_connection(read_only=True) as conn:
            for name, evaluate in evaluations.items():
                result = evaluate(conn, *days, *extra)
                yield dg.AssetCheckResult(asset_key=key, check_name=name, passed=result.passed,
                                          severity=result.severity, metadata=result.metadata,
                                          description=result.description)

    return _checks


def build_checks(config: HealthConfig) -> list[dg.AssetChecksDefinition]:
    contract = sync_table_columns(config)
    return [
        _checks_of("raw_events", {
            "required_columns_present": check_raw_required_columns,
            "ids_and_times_not_null": check_raw_ids_and_times,
            "ids_unique_after_dedupe": check_raw_ids_unique,
            "times_inside_their_partition": check_raw_times_in_partition,
            "events_every_day": partial(check_raw_rows_every_day, history_start=daily_partitions.start.date()),
        }),
        _checks_of("contact_metrics", {
            "counts_non_negative": partial(check_counts_non_negative, table="core.contact_metrics"),
        }),
        _checks_of("account_metrics", {
            "counts_non_negative": partial(check_counts_non_negative, table="core.account_metrics"),
            "shares_within_0_and_1": check_shares_within_0_and_1,
        }),
        _checks_of("account_health", {
            "live_accounts_scored_once": check_live_accounts_scored_once,
            "scores_within_0_and_100": check_scores_within_0_and_100,
        }),
        _checks_of("sync_export", {
            "rows_match_scored_accounts": check_export_rows_match_scores,
            "columns_match_contract": partial(check_export_columns_match_contract, contract=contract),
        }, reads_export_files=True),
    ]
