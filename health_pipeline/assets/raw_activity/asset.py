"""raw_activity: extract a range of days from the raw exports into the compact daily fact, and
snapshot the dimensions.

One step writes fourteen tables, each its own asset in the UI: core.daily_contact_activity (the
fact every metric reads), raw.events (the ledger of kept event ids) and raw.sessions for the
range; the current raw.accounts, raw.contacts, raw.identity_map and raw.outcomes snapshots
(identity merges resolved, so every later asset works on one clean notion of "a contact") and
those of the optional signal tables (raw.csm_pulse, raw.tickets, raw.nps_responses,
raw.invoices), whose dated rows the metrics read as of each day; the
point-in-time raw.account_history and raw.contact_history, which every later asset reads its
attributes from as they were on the day it computes; and the range's raw.quarantine rows.

Events are extracted in batches of days sized to DuckDB's memory limit (`event_batch_plan`).
Each batch reads the raw files once into a staging table, classifies every row in a view
(deduplicated by event_id, attributed through identity merges, excluded or quarantined), and
from that view writes the fact's rows and the ledger's; the quarantine's come from the same view
over only the rows that may be bad input (suspect_rows.sql). The fact is never
computed from stored events. raw.events keeps each kept event's day, id, contact and time only:
enough to deduplicate a later run's copies exactly and to audit the result, at a third of the
cost of storing whole events (docs/performance.md). When a run keeps an earlier copy of an id
that another run stored on a later day, that day is extracted again in the same transaction.
A run also extracts, first and in the same transaction, the earlier days of the raw export that no
run processed (`extraction_start`): the metrics of its days read every earlier day, and would
otherwise be scored from a truncated history (a warehouse rebuilt with a run of its last days).

Every raw row ends in exactly one place: loaded, dropped as a duplicate, left out as an
excluded identity (raw.contacts.excluded_reason says why), or set aside in raw.quarantine
with a reason code and the file and row it came from. Structural problems (a missing table
or column, an unreadable file, a column of the wrong type) fail the run with a RawInputError.
Every raw file is read before anything is written, so such a failure leaves the warehouse as
it was.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb

from health_pipeline.assets import daily, describe_spans, materialized, unextracted_days
from health_pipeline.checks import ACCEPT_SNAPSHOT_TAG, AuditContext, audit, check_specs
from health_pipeline.engines import EngineMismatch, EventEngine
from health_pipeline.partitions import date_range
from health_pipeline.progress import report_progress
from health_pipeline.publish import (
    PER_DAY,
    day_batches,
    day_figures,
    plan_batches,
    replace_table,
    swap_range,
    table_metadata,
    transaction,
)
from health_pipeline.raw_input import (
    CUSTOMER_OUTCOMES,
    PULSE_SENTIMENTS,
    RAW_TABLES,
    SIGNAL_TABLES,
    TICKET_PRIORITIES,
    TICKET_STATUSES,
    RawTable,
)
from health_pipeline.resources import Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sources import RawSource
from health_pipeline.sql import SqlFolder, column_type, scalar, table_exists

SQL = SqlFolder(__file__)
# A staged raw event (its columns as text, its file and row) takes about this many bytes in
# DuckDB, with the hash tables that deduplicate it: measured at scale M (docs/performance.md).
STAGED_EVENT_BYTES = 200
CSV_BYTES_PER_EVENT = 100  # a CSV export's row, for the batch plan when there is no parquet metadata
MAX_MERGE_DEPTH = 32  # merge chains longer than this are treated as cycles
# How a raw row was classified, when not bad input: every other classification is a quarantine reason code.
LOADED, DUPLICATE, EXCLUDED = "loaded", "duplicate", "excluded"

# asset key -> (warehouse table, what a row is)
TABLES = {
    "daily_contact_activity": (
        "core.daily_contact_activity",
        "One row per contact per UTC day with any session or event: the compact fact every metric reads. "
        "sessions started, events of any name, last_seen_at (the latest session or event time that day), "
        "`<event>_count` for each tracked event, and first_session_activated: whether the day's first session "
        "included the onboarding first-session event (null on days without a session)."),
    "raw_events": ("raw.events", "One row per kept product event of a counted contact, deduplicated by event_id, "
                                 "in UTC: activity_date, event_id, user_id (the contact), time. The ledger that "
                                 "deduplicates later runs' copies; the fact holds the counts."),
    "raw_sessions": ("raw.sessions", "One row per session of a counted contact, deduplicated by session_id, in UTC: "
                                     "activity_date, session_id, user_id (the contact), time."),
    "accounts": ("raw.accounts", "One row per account of the current accounts export that loaded (the snapshot "
                                 "every run refreshes): name, owner, plan, arr, vertical, customer_since, status, "
                                 "churned_at, crm_account_id, renewal_date, seats_purchased."),
    "contacts": ("raw.contacts", "One row per contact (a user id not merged into another) of the current users export, "
                                 "with its account, joindate, role and excluded_reason (internal, test or no "
                                 "identity; such contacts are kept but not counted)."),
    "identity_map": ("raw.identity_map", "One row per merged-away user id: the contact it resolves to "
                                         "(user_id, contact_id), from user_migrations."),
    "outcomes": ("raw.outcomes", "One row per customer outcome of the current outcomes export (optional; empty "
                                 "without it): account_id, outcome_date, outcome (renewed, churned, downgraded or "
                                 "expanded), arr_before, arr_after, reason."),
    "csm_pulse": ("raw.csm_pulse", "One row per CSM pulse of the current csm_pulse export (optional; empty "
                                   "without it): account_id, pulse_date, sentiment (green, yellow or red), note, "
                                   "author. One pulse per account and day."),
    "tickets": ("raw.tickets", "One row per support ticket of the current tickets export (optional; empty without "
                               "it): ticket_id, account_id, opened_at and closed_at (UTC), priority, status."),
    "nps_responses": ("raw.nps_responses", "One row per NPS response of the current nps_responses export (optional; "
                                           "empty without it): user_id (the contact, merges followed) or "
                                           "account_id, responded_at (UTC), score (0 to 10)."),
    "invoices": ("raw.invoices", "One row per invoice of the current invoices export (optional; empty without it): "
                                 "invoice_id, account_id, due_date, paid_at, amount."),
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
    SQL.run(conn, "activity_attribution")
    outcomes = tables["outcomes"]
    if outcomes is None:  # the outcomes export is optional
        SQL.run(conn, "outcomes_read", outcomes=None)
    else:
        with outcomes.reading(conn):
            SQL.run(conn, "outcomes_read", {**outcomes.params, "outcome_kinds": list(CUSTOMER_OUTCOMES)},
                    outcomes=outcomes)
    SQL.run(conn, "outcomes_snapshot")
    stage_signals(conn, tables)
    for source, classified in (("accounts", "accounts_read"), ("users", "users_read"),
                               ("users", "contacts_checked"), ("user_migrations", "migrations_read"),
                               ("outcomes", "outcomes_read"), *((t, f"{t}_read") for t in SIGNAL_TABLES)):
        SQL.run(conn, "quarantine_classified_rows", {"source_table": source}, classified=classified, activity=None)
    for source, classified in (("accounts", "accounts_read"), ("outcomes", "outcomes_read"),
                               *((t, f"{t}_read") for t in SIGNAL_TABLES)):
        SQL.run(conn, "quarantine_attribute_rows", {"source_table": source}, classified=classified)
    return {
        "contacts_excluded": _count_outcome(conn, "contacts_checked", EXCLUDED),
        "accounts_duplicates_dropped": _count_outcome(conn, "accounts_read", DUPLICATE),
        "users_duplicates_dropped": _count_outcome(conn, "users_read", DUPLICATE),
        "outcomes_duplicates_dropped": _count_outcome(conn, "outcomes_read", DUPLICATE),
        **{f"{t}_duplicates_dropped": _count_outcome(conn, f"{t}_read", DUPLICATE) for t in SIGNAL_TABLES},
        "nps_responses_from_excluded_users": _count_outcome(conn, "nps_responses_read", EXCLUDED),
        "accounts_churned_without_date": scalar(conn, SQL.render("accounts_churned_without_date")),
    }


# The optional signal tables: the columns raw.<table> keeps, and the enumerations their reading binds.
SIGNAL_COLUMNS = {
    "csm_pulse": ("account_id", "pulse_date", "sentiment", "note", "author"),
    "tickets": ("ticket_id", "account_id", "opened_at", "closed_at", "priority", "status"),
    "nps_responses": ("user_id", "account_id", "responded_at", "score"),
    "invoices": ("invoice_id", "account_id", "due_date", "paid_at", "amount"),
}
SIGNAL_VALUES = {
    "csm_pulse": {"sentiments": list(PULSE_SENTIMENTS)},
    "tickets": {"priorities": list(TICKET_PRIORITIES), "statuses": list(TICKET_STATUSES)},
}


def stage_signals(conn: duckdb.DuckDBPyConnection, tables: dict) -> None:
    """Classify the rows of the optional signal tables (an absent one as no rows) and stage those
    that load as <table>_snapshot. Reads accounts_read, accounts_snapshot and activity_attribution."""
    for name in SIGNAL_TABLES:
        table = tables[name] or RawTable.absent(name)
        with table.reading(conn):
            SQL.run(conn, f"{name}_read", {**table.params, **SIGNAL_VALUES.get(name, {})}, **{name: table})
        SQL.run(conn, "signal_snapshot", table=name, columns=SIGNAL_COLUMNS[name])


def stage_classified(conn: duckdb.DuckDBPyConnection, activity: ActivityTable, bounds: dict, stored: bool,
                     shape_only: bool = False) -> None:
    """Stage an activity table's rows in [range_start, range_end) (none, if `shape_only`) and
    define as views over them their classification (<name>_classified), the loaded rows
    (<name>_loaded) and the classification of the rows that may be bad input
    (<name>_suspect_classified), which the quarantine reads."""
    params = {**activity.raw.params, **(bounds if not shape_only else {})}
    with activity.raw.reading(conn):
        SQL.run(conn, "activity_in_range", params, activity=activity, shape_only=shape_only)
    SQL.run(conn, "kept_copies", activity=activity)
    same_id_type = stored and (column_type(conn, f"raw.{activity.name}", activity.id_column)
                               == column_type(conn, f"{activity.name}_in_range", activity.id_column))
    SQL.run(conn, "stored_elsewhere", _range(bounds) if stored else {}, activity=activity, stored=stored,
            same_id_type=same_id_type)
    any_stored = bool(scalar(conn, f"SELECT count(*) FROM {activity.name}_stored_elsewhere"))
    SQL.run(conn, "activity_classified", activity=activity, any_stored=any_stored,
            rows=f"{activity.name}_in_range", view=f"{activity.name}_classified")
    SQL.run(conn, "activity_loaded", activity=activity)
    SQL.run(conn, "suspect_rows", activity=activity)
    SQL.run(conn, "activity_classified", activity=activity, any_stored=any_stored,
            rows=f"{activity.name}_suspect", view=f"{activity.name}_suspect_classified")


def outcome_counts(name: str, outcomes: dict) -> dict:
    """What was read, dropped, quarantined and kept, from the rows per outcome."""
    read = sum(outcomes.values())
    return {
        f"{name}_read": read,
        f"{name}_duplicates_dropped": outcomes.get(DUPLICATE, 0),
        f"{name}_from_excluded_users": outcomes.get(EXCLUDED, 0),
        f"{name}_quarantined": read - sum(outcomes.get(o, 0) for o in (LOADED, DUPLICATE, EXCLUDED)),
        f"{name}_loaded": outcomes.get(LOADED, 0),
    }


def stage_sessions(conn: duckdb.DuckDBPyConnection, sessions: ActivityTable, bounds: dict) -> dict:
    """Stage the range's sessions (sessions_loaded) and their bad rows; return what was read,
    dropped, quarantined and kept."""
    stage_classified(conn, sessions, bounds, stored=table_exists(conn, "raw.sessions"))
    SQL.run(conn, "quarantine_classified_rows", {"source_table": sessions.raw.name},
            classified="sessions_suspect_classified", activity=sessions)
    outcomes = dict(conn.execute("SELECT outcome, count(*) FROM sessions_classified GROUP BY outcome").fetchall())
    return outcome_counts("sessions", outcomes)


def stage_undated(conn: duckdb.DuckDBPyConnection, activity: ActivityTable, future_limit: dt.datetime) -> None:
    """Stage the rows of an activity table that no day can hold (no usable time, or too far in the future)."""
    with activity.raw.reading(conn):
        SQL.run(conn, "quarantine_undated_rows",
                {**activity.raw.params, "source_table": activity.raw.name, "future_limit": future_limit},
                activity=activity)


def _range(bounds: dict) -> dict:
    return {"range_start": bounds["range_start"], "range_end": bounds["range_end"]}


def _bounds(first_day: dt.date, last_day: dt.date, future_limit: dt.datetime) -> dict:
    return {"range_start": dt.datetime.combine(first_day, dt.time()),
            "range_end": dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time()),
            "future_limit": future_limit}


def fact_params(config: HealthConfig) -> dict:
    return {"first_session_event": config.onboarding.first_session_event,
            **{f"tracked_event_{i}": event for i, event in enumerate(config.tracked_events, start=1)}}


@dataclass(frozen=True)
class Extraction:
    """What the staged range's events are extracted with, batch by batch, inside the swap."""

    events: ActivityTable
    config: HealthConfig
    future_limit: dt.datetime
    batch_days: int

    def stage_shapes(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Empty tables shaped like the ledger's and the fact's rows, staged from the same
        statements over no rows, so the swap can create and conform raw.events and
        core.daily_contact_activity before its transaction."""
        day = dt.date(1970, 1, 1)
        # The fact's statement reads raw.sessions: on a new warehouse, create it as the swap would.
        conn.execute("CREATE TABLE IF NOT EXISTS raw.sessions AS SELECT * FROM sessions_loaded LIMIT 0")
        stage_classified(conn, self.events, {}, stored=False, shape_only=True)
        conn.execute("CREATE OR REPLACE TEMP TABLE events_ledger_shape AS SELECT * FROM events_loaded LIMIT 0")
        fact = self.count(conn, day, day)
        conn.execute(f"CREATE OR REPLACE TEMP TABLE daily_fact_shape AS {fact} LIMIT 0",
                     _range(_bounds(day, day, self.future_limit)))

    def count(self, conn: duckdb.DuckDBPyConnection, first_day: dt.date, last_day: dt.date) -> str:
        """Count the staged events per contact and day (events_counted); return the fact's SELECT."""
        params = {**fact_params(self.config), **_range(_bounds(first_day, last_day, self.future_limit))}
        SQL.run(conn, "events_counted", params, config=self.config)
        return SQL.render("daily_contact_activity", config=self.config)

    def batch(self, conn: duckdb.DuckDBPyConnection, first_day: dt.date, last_day: dt.date) -> tuple[dict, list]:
        """Inside the swap: replace the events of [first_day, last_day] in the ledger, the fact and
        the quarantine with what the raw files hold for those days. Returns the rows per outcome
        (and the misspelled names) and the days outside the batch whose stored copies lost to
        earlier ones here."""
        report_progress(f"reading raw {self.events.raw.name} ({len(self.events.raw.files):,} files) "
                        f"for {first_day} .. {last_day}")
        bounds = _bounds(first_day, last_day, self.future_limit)
        days = {"first_day": first_day, "last_day": last_day}
        for table, column in (("raw.events", "activity_date"), ("core.daily_contact_activity", "activity_date"),
                              ("raw.quarantine", "partition_date")):
            only_events = " AND source_table = $source_table" if table == "raw.quarantine" else ""
            conn.execute(f"DELETE FROM {table} WHERE {column} BETWEEN $first_day AND $last_day{only_events}",
                         {**days, **({"source_table": self.events.raw.name} if only_events else {})})
        stage_classified(conn, self.events, bounds, stored=True)
        superseded = []
        if scalar(conn, "SELECT count(*) FROM events_stored_elsewhere"):  # else nothing to supersede
            superseded = [day for (day,) in SQL.run(conn, "superseded_copies", _range(bounds),
                                                     activity=self.events).fetchall()]
        conn.execute("INSERT INTO raw.events BY NAME SELECT * FROM events_loaded")
        SQL.run(conn, "quarantine_classified_rows", {"source_table": self.events.raw.name},
                classified="events_suspect_classified", activity=self.events, into="raw.quarantine")
        fact = self.count(conn, first_day, last_day)
        conn.execute(f"INSERT INTO core.daily_contact_activity BY NAME {fact}", _range(bounds))
        outcomes = dict(conn.execute("SELECT outcome, sum(events) FROM events_counted GROUP BY ALL").fetchall())
        misspelled = SQL.run(conn, "event_names_in_another_case",
                             {"tracked_events": list(self.config.tracked_events)}).fetchall()
        return {"outcomes": outcomes, "misspelled": misspelled}, superseded


def event_batch_plan(conn: duckdb.DuckDBPyConnection, events: RawTable, first_day: dt.date,
                     last_day: dt.date) -> dict:
    """How many days of raw events one batch stages (publish.plan_batches), at STAGED_EVENT_BYTES
    an event and the raw files' average events per day."""
    per_day = events_per_day(conn, events)
    return plan_batches(conn, first_day, last_day, per_day * STAGED_EVENT_BYTES,
                        f"about {per_day:,} raw events a day")


def events_per_day(conn: duckdb.DuckDBPyConnection, events: RawTable) -> int:
    """The raw event files' average rows per day they cover, from their parquet metadata and
    statistics. Without both (a CSV export, or times as text): their size at
    CSV_BYTES_PER_EVENT, as if they held one day, which errs towards smaller batches."""
    if events.is_csv or not events.is_plain_timestamp("time"):
        return sum(Path(f).stat().st_size for f in events.files) // CSV_BYTES_PER_EVENT
    rows, days = conn.execute(SQL.render("events_per_day"), {"files": list(events.files)}).fetchall()[0]
    return int(rows // max(1, days or 1))


def stage_inputs(conn: duckdb.DuckDBPyConnection, raw: RawSource, config: HealthConfig) -> tuple[dict, dict]:
    """Locate the raw tables, and read the dimension exports: stage the snapshots, the identity
    map, whose activity counts (activity_attribution) and the dimensions' bad rows
    (quarantine_rows). Nothing is written yet. Returns the raw tables and the figures."""
    tables = {name: raw.table(conn, name) for name in RAW_TABLES}
    SQL.run(conn, "quarantine_rows")
    # Created outside the swap's transaction, as publish.transaction explains.
    for bookkeeping in ("accepted_snapshots", "account_history", "contact_history", "history_runs"):
        SQL.run(conn, bookkeeping)
    report_progress("reading accounts, users, identity merges, outcomes and the CRM's signals")
    return tables, stage_dimensions(conn, tables, config)


def future_limit(raw: RawSource, now: dt.datetime) -> dt.datetime:
    """The latest time a raw row may have without being quarantined as future_time."""
    return now + dt.timedelta(hours=raw.future_tolerance_hours)


def stage_extract(conn: duckdb.DuckDBPyConnection, raw: RawSource, config: HealthConfig,
                  first_day: dt.date, last_day: dt.date, now: dt.datetime) -> tuple[dict, Extraction]:
    """Read the dimension exports and the range's sessions and stage what the range's tables will
    hold, except the events, which the swap extracts batch by batch (the returned Extraction).
    Nothing is written yet. `now` is the run's clock (UTC, naive) for the future-time rule.
    Returns the figures the asset reports, and the extraction."""
    tables, counts = stage_inputs(conn, raw, config)
    bounds = _bounds(first_day, last_day, future_limit(raw, now))
    sessions, events = activity_tables(tables)
    report_progress(f"reading raw {sessions.raw.name} ({len(sessions.raw.files):,} files)")
    counts |= stage_sessions(conn, sessions, bounds)
    for activity in (sessions, events):
        stage_undated(conn, activity, bounds["future_limit"])
    plan = event_batch_plan(conn, events.raw, first_day, last_day)
    extraction = Extraction(events, config, bounds["future_limit"], plan["batch_days"])
    extraction.stage_shapes(conn)
    return counts | {f"events_{k}": v for k, v in plan.items()}, extraction


# dated table -> (its date column, the staged rows that replace the range; events are added batch by batch)
DATED = {
    "raw.sessions": ("activity_date", "sessions_loaded"),
    "raw.events": ("activity_date", "events_ledger_shape"),
    "core.daily_contact_activity": ("activity_date", "daily_fact_shape"),
    "raw.quarantine": ("partition_date", "quarantine_rows"),
}
# snapshot table -> the staged rows that replace it whole
SNAPSHOTS = {"raw.accounts": "accounts_snapshot", "raw.contacts": "contacts_snapshot",
             "raw.identity_map": "identity_map", "raw.outcomes": "outcomes_snapshot",
             **{f"raw.{name}": f"{name}_snapshot" for name in SIGNAL_TABLES}}
# history table -> (the staged snapshot it records, its key, its attributes)
HISTORIES = {
    "raw.account_history": ("accounts_snapshot", "account_id",
                            ("name", "owner", "plan", "arr", "vertical", "customer_since", "status", "churned_at",
                             "crm_account_id", "renewal_date", "seats_purchased")),
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


def swap_staged(conn: duckdb.DuckDBPyConnection, extraction: Extraction, first_day: dt.date, last_day: dt.date,
                now: dt.datetime) -> dict:
    """Inside a `transaction`: replace the snapshots and the range's dated rows with what
    stage_extract staged, record the snapshots in the history, extract the range's events batch by
    batch, and extract again the days outside the range whose stored copies lost to earlier ones
    in it. Returns the rows written per table, the events' counts and the days extracted again."""
    written = swap_dimensions(conn, first_day, last_day, now)
    for table, (date_column, staged) in DATED.items():
        written[table] = swap_range(conn, table, date_column, first_day, last_day, staged)
    bounds = _range(_bounds(first_day, last_day, now))
    superseded = SQL.run(conn, "superseded_copies", bounds, activity=activity_tables_named("sessions")).fetchall()
    written["sessions_superseded_on_later_days"] = len(superseded)
    again = {day for (day,) in superseded}
    outcomes, misspelled, events_superseded = {}, {}, 0
    for batch_first, batch_last in day_batches(first_day, last_day, extraction.batch_days):
        figures, lost = extraction.batch(conn, batch_first, batch_last)
        _add(outcomes, figures["outcomes"])
        _add(misspelled, {(name, tracked): n for name, tracked, n in figures["misspelled"]})
        events_superseded += len(lost)
        again |= set(lost)
    written["events_superseded_on_later_days"] = events_superseded
    # A day that lost a copy is extracted again: its copy is now a duplicate of the earlier one.
    # Its sessions are already right (raw.sessions holds them whole); its events are read again.
    written["days_extracted_again"] = sorted(day for day in again if not first_day <= day <= last_day)
    for day in written["days_extracted_again"]:
        report_progress(f"extracting {day} again: a copy stored there lost to an earlier one")
        extraction.batch(conn, day, day)
    for table in ("raw.events", "core.daily_contact_activity"):  # a range each, so the zone maps prune
        written[table] = sum(
            scalar(conn, f"SELECT count(*) FROM {table} WHERE activity_date BETWEEN $f AND $l", {"f": f, "l": last})
            for f, last in [(first_day, last_day), *((day, day) for day in written["days_extracted_again"])])
    written["events_outcomes"], written["events_misspelled"] = outcomes, misspelled
    return written | facts_rewritten(conn, first_day, last_day)


def swap_dimensions(conn: duckdb.DuckDBPyConnection, first_day: dt.date, last_day: dt.date,
                    now: dt.datetime) -> dict:
    """Inside a `transaction`: replace the snapshots with the staged ones and record them in the
    history; return the rows written per table."""
    written = {table: replace_table(conn, table, staged) for table, staged in SNAPSHOTS.items()}
    return written | record_history(conn, first_day, last_day, now)


def facts_rewritten(conn: duckdb.DuckDBPyConnection, first_day: dt.date, last_day: dt.date) -> dict:
    """Inside a `transaction`, once the fact is rewritten from `first_day` on: forget the month-end
    checkpoints that read the old days; return the quarantine's rows of the range."""
    if table_exists(conn, "core.contact_recency"):
        SQL.run(conn, "contact_recency_forgotten", {"first_day": first_day})
    return {"raw.quarantine": scalar(
        conn, "SELECT count(*) FROM raw.quarantine WHERE partition_date BETWEEN $f AND $l OR partition_date IS NULL",
        {"f": first_day, "l": last_day})}


def _add(total: dict, more: dict) -> None:
    for key, n in more.items():
        total[key] = total.get(key, 0) + int(n)


def activity_tables_named(name: str) -> ActivityTable:
    """An activity table as the statements over stored rows need it: its name and id."""
    return ActivityTable(name, None, ID_COLUMN[name], ())


def events_figures(written: dict) -> dict:
    """The events' counts and the misspelled names of the run, from what swap_staged returned."""
    figures = outcome_counts("events", written["events_outcomes"])
    figures["event_names_in_another_case"] = ", ".join(
        f"{name} ({n:,} events; tracked as {tracked})"
        for (name, tracked), n in sorted(written["events_misspelled"].items())) or "none"
    return figures


def extract(conn: duckdb.DuckDBPyConnection, raw: RawSource, config: HealthConfig,
            first_day: dt.date, last_day: dt.date, now: dt.datetime) -> dict:
    """stage_extract, then swap everything in one transaction, unaudited (the asset audits)."""
    counts, extraction = stage_extract(conn, raw, config, first_day, last_day, now)
    with transaction(conn, {table: staged for table, (_, staged) in DATED.items()}):
        written = swap_staged(conn, extraction, first_day, last_day, now)
    return _figures(conn, counts, written, first_day, last_day)


def _figures(conn: duckdb.DuckDBPyConnection, counts: dict, written: dict, first_day, last_day) -> dict:
    """The run's figures: what stage_extract counted, the events' counts, each table's rows
    written (`written.<table>`) and the quarantine's rows per source and reason."""
    counts = {**counts, **events_figures(written),
              **{f"written.{t}": n for t, n in written.items() if not t.startswith("events_outcomes")
                 and t != "events_misspelled"}}
    for source, reason, n in conn.execute(
        "SELECT source_table, reason, count(*) FROM raw.quarantine "
        "WHERE partition_date BETWEEN $f AND $l OR partition_date IS NULL GROUP BY ALL ORDER BY ALL",
        {"f": first_day, "l": last_day},
    ).fetchall():
        counts[f"quarantined.{source}.{reason}"] = n
    return counts


def _metadata(conn: duckdb.DuckDBPyConnection, counts: dict, first_day: dt.date, last_day: dt.date,
              lake=None) -> dict:
    """Each table's own figures: rows written, schema, and what it says about the input. The
    ledger's and the fact's come from `lake` when the Spark engine keeps them (engines.spark.SparkSql)."""
    lake = lake or conn
    days = {"first_day": str(first_day), "last_day": str(last_day)}
    per_reason = {k: v for k, v in counts.items() if k.startswith("quarantined.")}
    events = {k: v for k, v in counts.items() if k.startswith("events_")}
    sessions = {k: v for k, v in counts.items() if k.startswith("sessions_")}
    written = {table: counts[f"written.{table}"] for table in (*SNAPSHOTS, *HISTORIES, *DATED)}
    events["events_superseded_on_later_days"] = counts["written.events_superseded_on_later_days"]
    sessions["sessions_superseded_on_later_days"] = counts["written.sessions_superseded_on_later_days"]
    again = counts["written.days_extracted_again"]
    return {
        "daily_contact_activity": _also_on(again, lake, "core.daily_contact_activity", table_metadata(
            lake, "core.daily_contact_activity", written["core.daily_contact_activity"],
            ("activity_date", first_day, last_day), **days,
            other_days_refreshed=", ".join(map(str, again)) or "none",
            **{k: events[k] for k in ("events_batch_days", "events_batches", "events_batch_plan") if k in events})),
        "raw_events": _also_on(again, lake, "raw.events", table_metadata(
            lake, "raw.events", written["raw.events"], ("activity_date", first_day, last_day), **events, **days,
            event_names_in_another_case=counts["event_names_in_another_case"])),
        "raw_sessions": table_metadata(lake, "raw.sessions", written["raw.sessions"],
                                       ("activity_date", first_day, last_day), **sessions, **days),
        "accounts": table_metadata(conn, "raw.accounts", written["raw.accounts"],
                                   accounts_duplicates_dropped=counts["accounts_duplicates_dropped"],
                                   accounts_churned_without_date=counts["accounts_churned_without_date"]),
        "outcomes": table_metadata(conn, "raw.outcomes", written["raw.outcomes"],
                                   outcomes_duplicates_dropped=counts["outcomes_duplicates_dropped"],
                                   **_outcome_counts(conn)),
        **{name: table_metadata(conn, f"raw.{name}", written[f"raw.{name}"],
                                **{f"{name}_duplicates_dropped": counts[f"{name}_duplicates_dropped"]},
                                **({"nps_responses_from_excluded_users": counts["nps_responses_from_excluded_users"]}
                                   if name == "nps_responses" else {}))
           for name in SIGNAL_TABLES},
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


def _also_on(days: list[dt.date], conn: duckdb.DuckDBPyConnection, table: str, metadata: dict) -> dict:
    """A dated table's `metadata` with the figures of `days`: days after the run's range that it
    extracted again, which `materialized` records as their own partitions' materializations."""
    per_day = dict(metadata[PER_DAY].value)
    for day in days:
        per_day |= day_figures(conn, table, "activity_date", day, day)
    return metadata | {PER_DAY: dg.MetadataValue.json(per_day)}


def _outcome_counts(conn: duckdb.DuckDBPyConnection) -> dict:
    return {f"outcomes_{kind}": n for kind, n in conn.execute(
        "SELECT outcome, count(*) FROM raw.outcomes GROUP BY ALL ORDER BY ALL").fetchall()}


def _versions(conn: duckdb.DuckDBPyConnection, history: str) -> dict:
    current, closed = conn.execute(
        f"SELECT count(*) FILTER (WHERE valid_to IS NULL), count(*) FILTER (WHERE valid_to IS NOT NULL) FROM {history}"
    ).fetchall()[0]
    return {"current_versions": current, "closed_versions": closed}


def extraction_start(conn: duckdb.DuckDBPyConnection, raw: RawSource, first_day: dt.date) -> dt.date:
    """The first day a run of the days from `first_day` extracts: the earliest earlier day that the
    history lacks (assets.unextracted_days), so that the metrics of its days never read a truncated
    history, else `first_day`. One range from there keeps the swap of one range: a held day inside
    it is extracted again, as any rerun may, and the usual gap is a single span anyway (a warehouse
    rebuilt from its last days, or started with a --start after the data's first day)."""
    missing = unextracted_days(conn, raw, first_day - dt.timedelta(days=1))
    return missing[0][0] if missing else first_day


def build_raw_activity(config: HealthConfig) -> dg.AssetsDefinition:
    specs = [
        dg.AssetSpec(key, description=row, kinds={"duckdb"}, code_version=config.metrics_version,
                     metadata={"dagster/table_name": table})
        for key, (table, row) in TABLES.items()
    ]

    @dg.multi_asset(name="raw_activity", specs=specs, check_specs=check_specs(config, "raw_events", "accounts"),
                    **daily())
    def raw_activity(context: dg.AssetExecutionContext, warehouse: Warehouse, raw_source: RawSource,
                     engine: EventEngine):
        """Extracts the run's days from the raw sessions and events into the daily fact, with the
        earlier days of the raw export that no run extracted yet, and snapshots accounts, contacts
        and identity merges from the current raw exports; bad rows go to the quarantine. Every
        table is swapped in and audited in one transaction, committed only if the checks pass. On
        the Spark engine (HEALTH_ENGINE=spark), the events are extracted there and the ledger and
        the fact published in the lake only when the checks pass (on_spark)."""
        run_first_day, last_day = date_range(context.partition_time_window)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        if added := raw_source.add_live_sample_days(last_day):
            context.log.info(f"live sample: generated {added[0]} .. {added[-1]}")
        read = raw_source.prepare(report_progress)
        with warehouse.get_connection(create=True) as conn:
            check_fact_kind(conn, engine)
            first_day = extraction_start(conn, raw_source, run_first_day)
            earlier = [(first_day, run_first_day - dt.timedelta(days=1))] if first_day < run_first_day else []
            if earlier:
                why = (f"extracting {describe_spans(earlier)} first: no run extracted them, and the metrics of "
                       f"{run_first_day} read every earlier day")
                context.log.info(why)
                report_progress(why)
            checks = AuditContext(known_gaps=raw_source.known_gap_days, snapshot_max_drop=raw_source.snapshot_max_drop,
                                  accept_snapshot=context.run.tags.get(ACCEPT_SNAPSHOT_TAG) == "true")
            if engine.on_spark:
                from health_pipeline.assets.raw_activity.on_spark import run_on_spark

                metadata = yield from run_on_spark(conn, engine, raw_source, config, first_day, last_day, now, checks)
            else:
                counts, extraction = stage_extract(conn, raw_source, config, first_day, last_day, now)
                with transaction(conn, {table: staged for table, (_, staged) in DATED.items()}):
                    written = swap_staged(conn, extraction, first_day, last_day, now)
                    yield from audit(config, ("raw_events", "accounts"), conn, first_day, last_day, checks)
                    SQL.run(conn, "accepted_snapshot", {"accepted_at": now})
                metadata = _metadata(conn, _figures(conn, counts, written, first_day, last_day), first_day, last_day)
        metadata["daily_contact_activity"]["earlier_days_extracted"] = describe_spans(earlier) or "none"
        # Committed: the days this run extracted are no longer stale (a crash before this line
        # leaves them stale, and the next run extracts them again: harmless).
        raw_source.forget_stale_days(first_day, last_day)
        stale = raw_source.stale_days()
        metadata["raw_events"] |= {f"source.{name}": value for name, value in read.items()} | {
            "source.stale_days_left": ", ".join(map(str, stale)) or "none"}
        if stale := [day for day in stale if day < first_day]:
            context.log.warning(f"{len(stale)} earlier days changed in the source since a run extracted them "
                                f"({stale[0]} .. {stale[-1]}): the next `health-pipeline run` starts at {stale[0]}")
        for key, meta in metadata.items():
            yield from materialized(context, meta, asset_key=key)

    return raw_activity


def check_fact_kind(conn: duckdb.DuckDBPyConnection, engine: EventEngine) -> None:
    """Refuse a warehouse whose daily fact the other engine built: DuckDB keeps it (and the ledger)
    as tables in the warehouse, Spark in the lake, of which the warehouse has a view."""
    kind = scalar(conn, "SELECT any_value(table_type) FROM information_schema.tables "
                        "WHERE table_schema = 'core' AND table_name = 'daily_contact_activity'")
    if engine.on_spark and kind == "BASE TABLE":
        raise EngineMismatch(
            f"HEALTH_ENGINE=spark, but the warehouse holds the daily fact and the event ledger that DuckDB built; the "
            f"Spark engine keeps them in the lake ({engine.lake_dir}). Give the Spark engine a warehouse of its own "
            "(HEALTH_WAREHOUSE) and run the history again there, or run with HEALTH_ENGINE=duckdb")
    if not engine.on_spark and kind == "VIEW":
        raise EngineMismatch(
            "the warehouse reads its daily fact from the lake the Spark engine keeps: run with HEALTH_ENGINE=spark "
            "(and the same HEALTH_LAKE_DIR), or give the DuckDB engine a warehouse of its own (HEALTH_WAREHOUSE)")
