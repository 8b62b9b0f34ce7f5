"""Blocking asset checks: what must hold for the days an asset wrote before anyone reads them.

Write, audit, publish: an asset swaps its range into its tables inside one transaction, runs its
checks there on exactly those days (`audit`), and commits only if none failed with an ERROR.
A failed check rolls the transaction back, so the published tables (and the sync files) stay
exactly as they were, and the steps after it do not run. Each check reports its figures as
metadata, shown next to the result in the UI.

Each `check_*` function takes a connection and the days to check and returns the result, so
tests can run it against a warehouse they corrupted on purpose. Their queries are the .sql
files beside this module.
"""

import datetime as dt
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dagster as dg
import duckdb

from health_pipeline.contract import sync_table_columns
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sql import SqlFolder, table_exists

# The columns of the raw activity tables that the checks and the later extractions read.
RAW_COLUMNS = {
    "raw.events": ("activity_date", "event_id", "user_id", "time"),
    "raw.sessions": ("activity_date", "session_id", "user_id", "time"),
}
RAW_IDS = {"raw.events": "event_id", "raw.sessions": "session_id"}
# Account metrics that are shares of a whole.
SHARE_METRICS = ("breadth_28d", "top_user_share_28d")
INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT")
EXAMPLES = 5  # how many offending keys a result lists
# The run tag that accepts a smaller accounts or users snapshot on purpose.
ACCEPT_SNAPSHOT_TAG = "health/accept_snapshot"
SQL = SqlFolder(__file__)

def _result(failures: int, metadata: dict, severity=dg.AssetCheckSeverity.ERROR, description=None):
    return dg.AssetCheckResult(passed=failures == 0, severity=severity, metadata=metadata, description=description)


def _params(first_day: dt.date, last_day: dt.date) -> dict:
    return {"first_day": first_day, "last_day": last_day}


def check_raw_required_columns(conn: duckdb.DuckDBPyConnection, first_day, last_day) -> dg.AssetCheckResult:
    """raw.events and raw.sessions have every column the later assets read."""
    present = {(table, name) for table in RAW_COLUMNS if table_exists(conn, table)
               for name, *_ in conn.execute(f"DESCRIBE {table}").fetchall()}
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
    """Deduplication left one row per event_id and per session_id: within the days checked, and
    none of their ids stored again on another day."""
    metadata, failures = {}, 0
    for table, id_column in RAW_IDS.items():
        name = table.removeprefix("raw.")
        ids, distinct_ids, elsewhere = SQL.run(
            conn, "raw_ids_unique", _params(first_day, last_day), table=table, id_column=id_column
        ).fetchall()[0]
        metadata |= {f"{name}_ids": ids, f"{name}_duplicate_ids": ids - distinct_ids,
                     f"{name}_ids_also_on_other_days": elsewhere}
        failures += ids - distinct_ids + elsewhere
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


def check_activity_every_day(
    conn: duckdb.DuckDBPyConnection, first_day, last_day, known_gaps: tuple[dt.date, ...] = ()
) -> dg.AssetCheckResult:
    """Every day has raw events and sessions, unless it is a declared known gap (HEALTH_KNOWN_GAPS)."""
    per_day = SQL.run(conn, "activity_per_day", _params(first_day, last_day)).fetchall()
    gaps = set(known_gaps)
    missing = [(day, events, sessions) for day, events, sessions in per_day
               if (events == 0 or sessions == 0) and day not in gaps]
    metadata = {
        "days_checked": len(per_day),
        "days_missing_activity": len(missing),
        "missing_days": ", ".join(
            f"{day} ({'no events' if not events else ''}{', ' if not events and not sessions else ''}"
            f"{'no sessions' if not sessions else ''})" for day, events, sessions in missing[:EXAMPLES]
        ) + (" …" if len(missing) > EXAMPLES else "") or "none",
        "known_gaps_in_range": ", ".join(str(d) for d, *_ in per_day if d in gaps) or "none",
        "fewest_events_in_a_day": min((e for d, e, _ in per_day if d not in gaps), default=0),
        "fewest_sessions_in_a_day": min((s for d, _, s in per_day if d not in gaps), default=0),
    }
    description = None
    if missing:
        description = (f"{len(missing)} day(s) have no raw events or sessions: the export is missing them, "
                       f"or declare them in HEALTH_KNOWN_GAPS")
    return _result(len(missing), metadata, description=description)


def check_snapshot_complete(
    conn: duckdb.DuckDBPyConnection, first_day, last_day, max_drop: float = 0.5, accepted: bool = False
) -> dg.AssetCheckResult:
    """The accounts and users exports lost nothing against the last accepted snapshot: no account
    gone, no account with more than the allowed share of its users gone, no required attribute
    emptied. A partial export would otherwise rewrite scores and history silently."""
    if not table_exists(conn, "raw.accepted_snapshots"):
        return _result(0, {"accounts_before": 0, "changes": "none: the first snapshot"})
    before, now, changes = SQL.run(conn, "snapshot_changes", {"max_drop": max_drop}).fetchall()[0]
    changes = [_snapshot_change(c) for c in changes or []]
    metadata = {
        "accounts_before": before,
        "accounts_now": now,
        "accounts_changed": len(changes),
        "changes": "; ".join(changes[:EXAMPLES]) + (" …" if len(changes) > EXAMPLES else "") or "none",
        "max_user_drop": f"{max_drop:.0%}",
        "accepted_on_purpose": accepted,
    }
    if accepted:
        return _result(0, metadata, description="a smaller snapshot accepted on purpose" if changes else None)
    description = None
    if changes:
        description = (f"{len(changes)} account(s) lost data against the last accepted snapshot; "
                       f"fix the export, or accept it on purpose (run tag {ACCEPT_SNAPSHOT_TAG}=true)")
    return _result(len(changes), metadata, description=description)


def _snapshot_change(change: dict) -> str:
    if change["missing"]:
        return f"{change['account_id']}: missing from accounts"
    parts = []
    if change["users_now"] < change["users_before"]:
        parts.append(f"{change['users_before']} → {change['users_now']} users")
    if change["attributes_lost"]:
        parts.append("lost " + ", ".join(change["attributes_lost"]))
    return f"{change['account_id']}: {', '.join(parts)}"


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
    """Every account that was a customer on the day has exactly one score that day, and no other account has one."""
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


def _shorten(value, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


class AuditFailed(Exception):
    """A blocking check failed on the rows an asset was about to publish; nothing was published."""

    def __init__(self, asset: str, first_day, last_day, failed: list[dg.AssetCheckResult]):
        def figures(result: dg.AssetCheckResult) -> str:
            shown = [f"{k}={_shorten(getattr(v, 'value', v))}" for k, v in result.metadata.items()
                     if k != "partitions"]
            return f"{result.check_name} ({'; '.join(shown)})"

        hints = [WHAT_TO_DO[r.check_name] for r in failed if r.check_name in WHAT_TO_DO]
        super().__init__(
            f"audit failed, nothing published: {asset} for {first_day} .. {last_day}: "
            + "; ".join(figures(r) for r in failed) + "".join(f". {hint}" for hint in hints)
        )


# What a user can do when a check on the input fails; the other checks guard the pipeline's own
# output, and their failure is a defect to report with the figures.
WHAT_TO_DO = {
    "activity_every_day": "Re-export the missing days, or, if they have no activity on purpose, list them in "
                          "HEALTH_KNOWN_GAPS",
    "snapshot_complete": "If the loss is real, run again with --accept-snapshot "
                         "(docs/operations.md: A smaller snapshot on purpose)",
    "required_columns_present": "Add the missing columns to the raw export",
}


@dataclass(frozen=True)
class AuditContext:
    """What a run tells its checks beyond the days: where it staged its files, the source's known
    gaps, how far a snapshot may shrink, and whether a smaller snapshot is accepted on purpose."""

    export_dir: Path | None = None
    known_gaps: tuple[dt.date, ...] = ()
    snapshot_max_drop: float = 0.5
    accept_snapshot: bool = False


def evaluations(config: HealthConfig, run: AuditContext = AuditContext()) -> dict[str, dict]:
    """asset -> check name -> evaluate(conn, first_day, last_day): every blocking check, per asset."""
    contract = sync_table_columns(config)
    export_dir, known_gaps = run.export_dir, run.known_gaps
    return {
        "accounts": {
            "snapshot_complete": partial(check_snapshot_complete, max_drop=run.snapshot_max_drop,
                                         accepted=run.accept_snapshot),
        },
        "raw_events": {
            "required_columns_present": check_raw_required_columns,
            "ids_and_times_not_null": check_raw_ids_and_times,
            "ids_unique_after_dedupe": check_raw_ids_unique,
            "times_inside_their_partition": check_raw_times_in_partition,
            "activity_every_day": partial(check_activity_every_day, known_gaps=known_gaps),
        },
        "contact_metrics": {
            "counts_non_negative": partial(check_counts_non_negative, table="core.contact_metrics"),
        },
        "account_metrics": {
            "counts_non_negative": partial(check_counts_non_negative, table="core.account_metrics"),
            "shares_within_0_and_1": check_shares_within_0_and_1,
        },
        "account_health": {
            "live_accounts_scored_once": check_live_accounts_scored_once,
            "scores_within_0_and_100": check_scores_within_0_and_100,
        },
        "sync_export": {
            "rows_match_scored_accounts": partial(check_export_rows_match_scores, export_dir=export_dir),
            "columns_match_contract": partial(check_export_columns_match_contract, export_dir=export_dir,
                                              contract=contract),
        },
    }


def check_specs(config: HealthConfig, *assets: str) -> list[dg.AssetCheckSpec]:
    """The blocking checks on `assets` that their step runs before it publishes them."""
    return [dg.AssetCheckSpec(name, asset=asset, description=getattr(evaluate, "func", evaluate).__doc__,
                              blocking=True)
            for asset in assets for name, evaluate in evaluations(config).get(asset, {}).items()]


def audit(config: HealthConfig, assets: str | tuple[str, ...], conn: duckdb.DuckDBPyConnection, first_day, last_day,
          run: AuditContext = AuditContext()):
    """Run the checks of `assets` on the rows their step has swapped in but not yet committed,
    yielding each result; raise AuditFailed after them if a check failed with severity ERROR, so
    the caller's transaction rolls back."""
    assets = (assets,) if isinstance(assets, str) else assets
    failed = []
    checks = [(asset, name, evaluate) for asset in assets
              for name, evaluate in evaluations(config, run).get(asset, {}).items()]
    for asset, name, evaluate in checks:
        result = evaluate(conn, first_day, last_day)
        result = dg.AssetCheckResult(asset_key=asset, check_name=name, passed=result.passed,
                                     severity=result.severity, metadata=result.metadata,
                                     description=result.description)
        yield result
        if not result.passed and result.severity == dg.AssetCheckSeverity.ERROR:
            failed.append(result)
    if failed:
        raise AuditFailed(" and ".join(assets), first_day, last_day, failed)
