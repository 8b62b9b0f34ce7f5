"""raw_activity: load raw sessions and events for a range of days, and snapshot the dimensions.

One step writes nine tables, each its own asset in the UI: raw.events and raw.sessions for the
range; the current raw.accounts, raw.contacts, raw.identity_map and raw.outcomes snapshots
(identity merges resolved, so every later asset works on one clean notion of "a contact"); the
point-in-time raw.account_history and raw.contact_history, which every later asset reads its
attributes from as they were on the day it computes; and the range's raw.quarantine rows.

Every raw row ends in exactly one place: loaded, dropped as a duplicate, left out as an
excluded identity (raw.contacts.excluded_reason says why), or set aside in raw.quarantine
with a reason code and the file and row it came from. Structural problems (a missing table
or column, an unreadable file, a column of the wrong type) fail the run with a RawInputError.
Every raw file is read before anything is written, so such a failure leaves the warehouse as
it was.
"""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import duckdb

from health_pipeline.assets import DAILY, materialized
from health_pipeline.checks import ACCEPT_SNAPSHOT_TAG, AuditContext, audit, check_specs
from health_pipeline.partitions import date_range
from health_pipeline.progress import report_progress
from health_pipeline.publish import replace_table, swap_range, table_metadata, transaction
from health_pipeline.raw_input import RAW_TABLES, RawTable
from health_pipeline.resources import RawSource, Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sql import SqlFolder, scalar, table_exists

SQL = SqlFolder(__file__)
MAX_MERGE_DEPTH = 32  # merge chains longer than this are treated as cycles
# The customer outcomes the outcomes export may hold.
CUSTOMER_OUTCOMES = ("renewed", "churned", "downgraded", "expanded")
# How a raw row was classified, when not bad input: every other classification is a quarantine reason code.
LOADED, DUPLICATE, EXCLUDED = "loaded", "duplicate", "excluded"

# asset key -> (warehouse table, what a row is)
TABLES = {
    "raw_events": ("raw.events", "One row per product event of a counted contact, deduplicated by event_id, in UTC: "
                                 "activity_date, event_id, user_id (the contact), session_id, event_table_name, time."),
    "raw_sessions": ("raw.sessions", "One row per session of a counted contact, deduplicated by session_id, in UTC: "
                                     "activity_date, session_id, user_id (the contact), time."),
    "accounts": ("raw.accounts", "One row per account of the current accounts export that loaded (the snapshot "
                                 "every run refreshes): name, owner, plan, arr, vertical, customer_since, status."),
    "contacts": ("raw.contacts", "One row per contact (a user id not merged into another) of the current users export, "
                                 "with its account, joindate, role and excluded_reason (internal, test or no "
                                 "identity; such contacts are kept but not counted)."),
    "identity_map": ("raw.identity_map", "One row per merged-away user id: the contact it resolves to "
                                         "(user_id, contact_id), from user_migrations."),
    "outcomes": ("raw.outcomes", "One row per customer outcome of the current outcomes export (optional; empty "
                                 "without it): account_id, outcome_date, outcome (renewed, churned, downgraded or "
                                 "expanded), arr_before, arr_after, reason."),
    "account_history": ("raw.account_history", "One row per version of an account's attributes: the accounts "
                                               "columns, in force on the days [valid_from, valid_to) (NULL "
                                               "valid_from: since the start; NULL valid_to: current)."),
    "contact_history": ("raw.contact_history", "One row per version of a contact's attributes (its account, role, "
                                               "exclusion), in force on the days [valid_from, valid_to)."),
    "quarantine": ("raw.quarantine", "One row per raw row set aside as bad input: partition_date (its UTC day; "
                                     "NULL for "
                                     "rows of users, accounts or merges, and for rows with no usable time), "
                                     "source_table, reason, source_file, source_row and the row as JSON."),
}
RAW_ACTIVITY_ASSETS = tuple(TABLES)


@dataclass(frozen=True)
class ActivityTable:
    """A raw activity table as the templates read it."""

    name: str  # the warehouse table raw.<name>
    raw: RawTable
    id_column: str
    extra_columns: tuple[str, ...]

    @property
    def read_columns(self) -> tuple[str, ...]:
        return (self.id_column, "user_id", *self.extra_columns)

    @property
    def columns(self) -> tuple[str, ...]:
        """The raw columns a quarantined row keeps."""
        return RAW_TABLES[self.raw.name]


ID_COLUMN = {"sessions": "session_id", "events": "event_id"}


def activity_tables(tables: dict[str, RawTable | None]) -> tuple[ActivityTable, ...]:
    return (
        ActivityTable("sessions", tables["sessions"], ID_COLUMN["sessions"], ()),
        ActivityTable("events", tables["all_events"], ID_COLUMN["events"], ("session_id", "event_table_name")),
    )


def _count_outcome(conn: duckdb.DuckDBPyConnection, classified: str, outcome: str) -> int:
    return int(scalar(conn, f"SELECT count(*) FROM {classified} WHERE outcome = $outcome", {"outcome": outcome}))


def stage_dimensions(conn: duckdb.DuckDBPyConnection, tables: dict, config: HealthConfig) -> dict:
    """Stage accounts, contacts and the identity map from the current raw exports, and their bad
    rows into quarantine_rows. Nothing is written to the warehouse yet."""
    readable = {"accounts": tables["accounts"], "users": tables["users"], "migrations": tables["user_migrations"]}
    for name, table in readable.items():
        if table is None:  # user_migrations is optional
            SQL.run(conn, f"{name}_read", **{name: None})
            continue
        with table.reading(conn):
            SQL.run(conn, f"{name}_read", table.params, **{name: table})
    SQL.run(conn, "identity_map", {"max_merge_depth": MAX_MERGE_DEPTH})
    SQL.run(conn, "accounts_snapshot")
    SQL.run(conn, "contacts_checked", {"exclude_identities": list(config.exclude_identities)})
    SQL.run(conn, "contacts_snapshot")
    outcomes = tables["outcomes"]
    if outcomes is None:  # the outcomes export is optional
        SQL.run(conn, "outcomes_read", outcomes=None)
    else:
        with outcomes.reading(conn):
            SQL.run(conn, "outcomes_read", {**outcomes.params, "outcome_kinds": list(CUSTOMER_OUTCOMES)},
                    outcomes=outcomes)
    SQL.run(conn, "outcomes_snapshot")
    for source, classified in (("accounts", "accounts_read"), ("users", "users_read"),
                               ("users", "contacts_checked"), ("user_migrations", "migrations_read"),
                               ("outcomes", "outcomes_read")):
        SQL.run(conn, "quarantine_classified_rows", {"source_table": source}, classified=classified, activity=None)
    for source, classified in (("accounts", "accounts_read"), ("outcomes", "outcomes_read")):
        SQL.run(conn, "quarantine_attribute_rows", {"source_table": source}, classified=classified)
    return {
        "contacts_excluded": _count_outcome(conn, "contacts_checked", EXCLUDED),
        "accounts_duplicates_dropped": _count_outcome(conn, "accounts_read", DUPLICATE),
        "users_duplicates_dropped": _count_outcome(conn, "users_read", DUPLICATE),
        "outcomes_duplicates_dropped": _count_outcome(conn, "outcomes_read", DUPLICATE),
        "accounts_churned_without_date": scalar(conn, SQL.render("accounts_churned_without_date")),
    }


def stage_activity(conn: duckdb.DuckDBPyConnection, activity: ActivityTable, bounds: dict) -> dict:
    """Stage one activity table's rows for the range (<name>_loaded) and its bad rows; return
    what was read, dropped, quarantined and kept."""
    with activity.raw.reading(conn):
        SQL.run(conn, "activity_in_range", {**activity.raw.params, **bounds}, activity=activity)
    stored = table_exists(conn, f"raw.{activity.name}")  # copies earlier runs stored on other days
    SQL.run(conn, "activity_classified", _range(bounds) if stored else {}, activity=activity, stored=stored)
    SQL.run(conn, "activity_loaded", activity=activity)
    classified = f"{activity.name}_classified"
    SQL.run(conn, "quarantine_classified_rows", {"source_table": activity.raw.name},
            classified=classified, activity=activity)
    with activity.raw.reading(conn):
        SQL.run(conn, "quarantine_undated_rows",
                {**activity.raw.params, "source_table": activity.raw.name, "future_limit": bounds["future_limit"]},
                activity=activity)
    outcomes = dict(conn.execute(f"SELECT outcome, count(*) FROM {classified} GROUP BY outcome").fetchall())
    read, name = sum(outcomes.values()), activity.name
    return {
        f"{name}_read": read,
        f"{name}_duplicates_dropped": outcomes.get(DUPLICATE, 0),
        f"{name}_from_excluded_users": outcomes.get(EXCLUDED, 0),
        f"{name}_quarantined": read - sum(outcomes.get(o, 0) for o in (LOADED, DUPLICATE, EXCLUDED)),
        f"{name}_loaded": outcomes.get(LOADED, 0),
    }


def _range(bounds: dict) -> dict:
    return {"range_start": bounds["range_start"], "range_end": bounds["range_end"]}


def stage_extract(conn: duckdb.DuckDBPyConnection, raw: RawSource, config: HealthConfig,
                  first_day: dt.date, last_day: dt.date, now: dt.datetime) -> dict:
    """Read every raw file and stage what the range's tables will hold: the dimension snapshots,
    the loaded sessions and events for [first_day, last_day], and the quarantine rows. Nothing is
    written yet. `now` is the run's clock (UTC, naive) for the future-time rule. Returns the
    figures the asset reports."""
    tables = {name: raw.table(conn, name) for name in RAW_TABLES}
    SQL.run(conn, "quarantine_rows")
    # Created outside the swap's transaction, as publish.transaction explains.
    for bookkeeping in ("accepted_snapshots", "days_to_refresh", "account_history", "contact_history", "history_runs"):
        SQL.run(conn, bookkeeping)
    bounds = {
        "range_start": dt.datetime.combine(first_day, dt.time()),
        "range_end": dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time()),
        "future_limit": now + dt.timedelta(hours=raw.future_tolerance_hours),
    }
    report_progress("reading accounts, users, identity merges and outcomes")
    counts = stage_dimensions(conn, tables, config)
    for activity in activity_tables(tables):
        report_progress(f"reading raw {activity.raw.name} ({len(activity.raw.files):,} files)")
        counts |= stage_activity(conn, activity, bounds)
    misspelled = SQL.run(conn, "event_names_in_another_case", {"tracked_events": list(config.tracked_events)})
    counts["event_names_in_another_case"] = ", ".join(
        f"{name} ({n:,} events; tracked as {tracked})" for name, tracked, n in misspelled.fetchall()) or "none"
    for source, reason, n in conn.execute(
        "SELECT source_table, reason, count(*) FROM quarantine_rows GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        counts[f"quarantined.{source}.{reason}"] = n
    return counts


# dated table -> (its date column, the staged rows that replace the range)
DATED = {
    "raw.sessions": ("activity_date", "sessions_loaded"),
    "raw.events": ("activity_date", "events_loaded"),
    "raw.quarantine": ("partition_date", "quarantine_rows"),
}
# snapshot table -> the staged rows that replace it whole
SNAPSHOTS = {"raw.accounts": "accounts_snapshot", "raw.contacts": "contacts_snapshot",
             "raw.identity_map": "identity_map", "raw.outcomes": "outcomes_snapshot"}
# history table -> (the staged snapshot it records, its key, its attributes)
HISTORIES = {
    "raw.account_history": ("accounts_snapshot", "account_id",
                            ("name", "owner", "plan", "arr", "vertical", "customer_since", "status", "churned_at",
                             "crm_account_id")),
    "raw.contact_history": ("contacts_snapshot", "user_id",
                            ("identity", "joindate", "account_id", "role", "excluded_reason")),
}


def record_history(conn: duckdb.DuckDBPyConnection, first_day: dt.date, last_day: dt.date,
                   recorded_at: dt.datetime) -> dict:
    """Inside a `transaction`: record the staged snapshots in the point-in-time history, a change
    dated from the day after the last day any earlier run processed; return the versions per table."""
    changes_from = scalar(conn, SQL.render("changes_from"), {"first_day": first_day})
    written = {}
    for history, (snapshot, key, attributes) in HISTORIES.items():
        SQL.run(conn, "history_recorded", {"changes_from": changes_from},
                history=history, snapshot=snapshot, key=key, attributes=attributes)
        written[history] = scalar(conn, f"SELECT count(*) FROM {history}")
    SQL.run(conn, "history_run", {"recorded_at": recorded_at, "first_day": first_day, "last_day": last_day})
    return written


def swap_staged(conn: duckdb.DuckDBPyConnection, first_day: dt.date, last_day: dt.date, now: dt.datetime) -> dict:
    """Inside a `transaction`: replace the snapshots and the range's dated rows with what
    stage_extract staged, record the snapshots in the history, and drop the copies on other days
    that this range's earlier copies supersede (queuing those days for the daily fact); return
    the rows written per table."""
    written = {table: replace_table(conn, table, staged) for table, staged in SNAPSHOTS.items()}
    written |= record_history(conn, first_day, last_day, now)
    for table, (date_column, staged) in DATED.items():
        written[table] = swap_range(conn, table, date_column, first_day, last_day, staged)
    bounds = {"range_start": dt.datetime.combine(first_day, dt.time()),
              "range_end": dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time())}
    for name in ("sessions", "events"):
        superseded = SQL.run(conn, "superseded_copies", bounds,
                             activity=ActivityTable(name, None, ID_COLUMN[name], ())).fetchall()
        days = sorted({day for (day,) in superseded})
        SQL.run(conn, "queue_days", {"days": days})
        written[f"{name}_superseded_on_later_days"] = len(superseded)
    return written


def extract(conn: duckdb.DuckDBPyConnection, raw: RawSource, config: HealthConfig,
            first_day: dt.date, last_day: dt.date, now: dt.datetime) -> dict:
    """stage_extract, then swap everything in one transaction, unaudited (the asset audits)."""
    counts = stage_extract(conn, raw, config, first_day, last_day, now)
    with transaction(conn, {table: staged for table, (_, staged) in DATED.items()}):
        counts |= {f"written.{t}": n for t, n in swap_staged(conn, first_day, last_day, now).items()}
    return counts


def _metadata(conn: duckdb.DuckDBPyConnection, counts: dict, first_day: dt.date, last_day: dt.date) -> dict:
    """Each table's own figures: rows written, schema, and what it says about the input."""
    days = {"first_day": str(first_day), "last_day": str(last_day)}
    per_reason = {k: v for k, v in counts.items() if k.startswith("quarantined.")}
    events = {k: v for k, v in counts.items() if k.startswith("events_")}
    sessions = {k: v for k, v in counts.items() if k.startswith("sessions_")}
    written = {table: counts[f"written.{table}"] for table in (*SNAPSHOTS, *HISTORIES, *DATED)}
    events["events_superseded_on_later_days"] = counts["written.events_superseded_on_later_days"]
    sessions["sessions_superseded_on_later_days"] = counts["written.sessions_superseded_on_later_days"]
    return {
        "raw_events": table_metadata(conn, "raw.events", written["raw.events"], ("activity_date", first_day, last_day),
                                     **events, **days,
                                     event_names_in_another_case=counts["event_names_in_another_case"]),
        "raw_sessions": table_metadata(conn, "raw.sessions", written["raw.sessions"],
                                       ("activity_date", first_day, last_day), **sessions, **days),
        "accounts": table_metadata(conn, "raw.accounts", written["raw.accounts"],
                                   accounts_duplicates_dropped=counts["accounts_duplicates_dropped"],
                                   accounts_churned_without_date=counts["accounts_churned_without_date"]),
        "outcomes": table_metadata(conn, "raw.outcomes", written["raw.outcomes"],
                                   outcomes_duplicates_dropped=counts["outcomes_duplicates_dropped"],
                                   **_outcome_counts(conn)),
        "account_history": table_metadata(conn, "raw.account_history", written["raw.account_history"],
                                          **_versions(conn, "raw.account_history")),
        "contact_history": table_metadata(conn, "raw.contact_history", written["raw.contact_history"],
                                          **_versions(conn, "raw.contact_history")),
        "contacts": table_metadata(conn, "raw.contacts", written["raw.contacts"],
                                   contacts_excluded=counts["contacts_excluded"],
                                   users_duplicates_dropped=counts["users_duplicates_dropped"]),
        "identity_map": table_metadata(conn, "raw.identity_map", written["raw.identity_map"]),
        "quarantine": table_metadata(conn, "raw.quarantine", written["raw.quarantine"],
                                     ("partition_date", first_day, last_day),
                                     quarantined_rows=written["raw.quarantine"], **per_reason, **days),
    }


def _outcome_counts(conn: duckdb.DuckDBPyConnection) -> dict:
    return {f"outcomes_{kind}": n for kind, n in conn.execute(
        "SELECT outcome, count(*) FROM raw.outcomes GROUP BY ALL ORDER BY ALL").fetchall()}


def _versions(conn: duckdb.DuckDBPyConnection, history: str) -> dict:
    current, closed = conn.execute(
        f"SELECT count(*) FILTER (WHERE valid_to IS NULL), count(*) FILTER (WHERE valid_to IS NOT NULL) FROM {history}"
    ).fetchall()[0]
    return {"current_versions": current, "closed_versions": closed}


def build_raw_activity(config: HealthConfig) -> dg.AssetsDefinition:
    specs = [
        dg.AssetSpec(key, description=row, kinds={"duckdb"}, code_version=config.metrics_version,
                     metadata={"dagster/table_name": table})
        for key, (table, row) in TABLES.items()
    ]

    @dg.multi_asset(name="raw_activity", specs=specs, check_specs=check_specs(config, "raw_events", "accounts"),
                    **DAILY)
    def raw_activity(context: dg.AssetExecutionContext, warehouse: Warehouse, raw_source: RawSource):
        """Loads raw sessions and events for the run's days and snapshots accounts, contacts and
        identity merges from the current raw exports; bad rows go to the quarantine. Every table
        is swapped in and audited in one transaction, committed only if the checks pass."""
        first_day, last_day = date_range(context.partition_time_window)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        if added := raw_source.add_live_sample_days(last_day):
            context.log.info(f"live sample: generated {added[0]} .. {added[-1]} in {raw_source.raw_dir}")
        with warehouse.get_connection() as conn:
            counts = stage_extract(conn, raw_source, config, first_day, last_day, now)
            checks = AuditContext(known_gaps=raw_source.known_gap_days, snapshot_max_drop=raw_source.snapshot_max_drop,
                                  accept_snapshot=context.run.tags.get(ACCEPT_SNAPSHOT_TAG) == "true")
            with transaction(conn, {table: staged for table, (_, staged) in DATED.items()}):
                counts |= {f"written.{t}": n for t, n in swap_staged(conn, first_day, last_day, now).items()}
                yield from audit(config, ("raw_events", "accounts"), conn, first_day, last_day, checks)
                SQL.run(conn, "accepted_snapshot", {"accepted_at": now})
            metadata = _metadata(conn, counts, first_day, last_day)
        for key, meta in metadata.items():
            yield from materialized(context, meta, asset_key=key)

    return raw_activity
