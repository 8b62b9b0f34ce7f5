"""postgres_sync: the sync tables upserted into the PostgreSQL database that CS tools connect to.

For a run's range (and the later days the exports rewrote with it), each of export.account_health,
export.contact_usage and export.band_changes is copied into the same-named table of the schema
HEALTH_SYNC_POSTGRES_SCHEMA (default `health`), keyed like the export. All three go in one
transaction: COPY into a temporary table, INSERT … ON CONFLICT DO UPDATE where a value differs,
then DELETE the range's rows the export no longer has, then COMMIT. A reader sees the old range
or the new one, a rerun changes nothing, and a sync killed mid-load leaves the tables as they
were (the server rolls back a dead client's transaction).

The database's objects are the user's too: connectors are granted SELECT on them and build views
on them. So a sync changes an object only when it must. Tables are created when missing and gain
only the export's new columns (the one statement that locks a table against its readers); the
views `account_health_latest` (each account's newest row, churned accounts included) and
`account_health_current` (each account's row on the newest snapshot date: current customers) are
created, or replaced in place, only when their definition changed, so grants and dependent views
stay. A view that cannot be replaced in place, or a lock held by another session's open
transaction past the lock timeout, fails the sync with one line naming the object (and the
session) and what to do. Text values lose any NUL character, which PostgreSQL cannot store; each
one is reported.

Without HEALTH_SYNC_POSTGRES_URL the asset syncs nothing: its materialization says so
(`skipped`), so a backfill of every asset still completes cleanly.
"""

import datetime as dt
import io
import time
from contextlib import contextmanager

import dagster as dg
import duckdb
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from health_pipeline.assets import daily_asset, record_refreshed, refreshed_through
from health_pipeline.partitions import date_range
from health_pipeline.redaction import redact
from health_pipeline.resources import PostgresSyncBlocked, PostgresTarget, Warehouse
from health_pipeline.sql import SqlFolder, quote

SQL = SqlFolder(__file__)
# export table -> its key besides snapshot_date
SYNCED = {"account_health": "account_id", "contact_usage": "user_id", "band_changes": "account_id"}
# The views connectors read: each one's query is <view>.pg.sql; its description is stored as the
# view's comment, which a connector's schema browser shows.
VIEWS = {
    "account_health_latest": (
        "Each account's newest row of account_health, whatever its date: an account no longer scored "
        "(churned) keeps its last row here. For current customers only, read account_health_current."),
    "account_health_current": (
        "Current customers: each account's row on the newest snapshot_date in account_health. An account "
        "not scored that day (churned) is absent; account_health_latest keeps its last row."),
}
# DuckDB's types as PostgreSQL's; anything else travels as text.
PG_TYPES = {
    "VARCHAR": "text", "BOOLEAN": "boolean", "DATE": "date", "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz", "DOUBLE": "double precision", "FLOAT": "real",
    "BIGINT": "bigint", "INTEGER": "integer", "SMALLINT": "smallint", "HUGEINT": "numeric",
}
COPY_BATCH_ROWS = 50_000
# PostgreSQL's text cannot hold U+0000: it is removed from text values on their way in.
NUL = "\x00"
# A failure or warning line names at most this many sessions or values, and counts the rest.
NAMED_AT_MOST = 5


def pg_type(duckdb_type: str) -> str:
    if duckdb_type.startswith("DECIMAL"):
        return "numeric"
    return PG_TYPES.get(duckdb_type, "text")


class PostgresSyncFailed(RuntimeError):
    """PostgreSQL refused or lost the sync, whose transaction was rolled back: nothing changed there."""


class _LockTimedOut(Exception):
    """The server gave up waiting for a lock on schema.relation (lock_timeout)."""

    def __init__(self, schema: str, relation: str):
        super().__init__(f"{schema}.{relation}")
        self.schema, self.relation = schema, relation


@contextmanager
def _locking(schema: str, relation: str):
    """Statements on `relation`: a lock timeout on it becomes _LockTimedOut, which names it."""
    try:
        yield
    except psycopg.errors.LockNotAvailable:
        raise _LockTimedOut(schema, relation) from None


def sync_range(duck: duckdb.DuckDBPyConnection, pg, schema: str, first_day: dt.date, last_day: dt.date,
               lock_timeout_seconds: int, log=None) -> dict:
    """Copy the exports' rows for [first_day, last_day] into PostgreSQL in one transaction; return,
    per table, the rows staged, inserted, updated and deleted, and the text values whose NUL
    characters were removed (each also a warning on `log`)."""
    counts = {}
    try:
        with pg.transaction():
            # Every lock the sync takes waits at most this long, so a reader's open transaction
            # fails the sync (named below) instead of stalling it, and every reader queued behind it.
            pg.execute("SELECT set_config('lock_timeout', %s, true)", (f"{lock_timeout_seconds}s",))
            pg.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
            for table, key in SYNCED.items():
                with _locking(schema, table):
                    counts[table] = _sync_table(duck, pg, schema, table, [key, "snapshot_date"], first_day,
                                                last_day, log)
            for view, description in VIEWS.items():
                with _locking(schema, view):
                    _define_view(pg, schema, view, description)
    except _LockTimedOut as timed_out:
        raise PostgresSyncBlocked(redact(_lock_timeout_line(pg, timed_out, lock_timeout_seconds))) from None
    except psycopg.Error as exc:
        # A message of the server or of libpq may quote connection settings: redacted, on one line.
        reason = " ".join(line.strip() for line in str(exc).strip().splitlines())
        raise PostgresSyncFailed(redact(f"PostgreSQL refused the sync, which was rolled back: {reason}")) from None
    return counts


def _sync_table(duck, pg, schema: str, table: str, key: list[str], first_day: dt.date, last_day: dt.date,
                log) -> dict:
    """Bring one synced table up to the export's columns and upsert the range's rows into it."""
    columns = [(name, pg_type(dtype)) for name, dtype, *_ in duck.execute(f"DESCRIBE export.{table}").fetchall()]
    synced_context = {"schema": schema, "table": table}
    have = [name for (name,) in pg.execute(SQL.render("synced_columns.pg"), synced_context).fetchall()]
    gained = [(name, type_) for name, type_ in columns if name not in have]
    if gained:  # a new table, or new columns: the only statements that lock the table against readers
        pg.execute(SQL.render("new_columns.pg" if have else "synced_table.pg", **synced_context, columns=gained,
                              key=key))
    staging = f"staged_{table}"
    pg.execute(SQL.render("staged_rows.pg", **synced_context, staging=staging))
    staged, nul_values = _copy(duck, pg, table, key, staging, [name for name, _ in columns], first_day, last_day)
    if nul_values and log:
        named = "; ".join(nul_values[:NAMED_AT_MOST]) + _and_more(nul_values)
        values = f"{len(nul_values)} text value{'s' if len(nul_values) > 1 else ''}"
        log.warning(f"{schema}.{table}: {values} held NUL characters, which PostgreSQL cannot store, and "
                    f"{'were' if len(nul_values) > 1 else 'was'} synced without them: {named}")
    written = pg.execute(SQL.render("upsert.pg", **synced_context, staging=staging, key=key,
                                    columns=have + [name for name, _ in gained])).fetchall()
    deleted = pg.execute(SQL.render("rows_gone.pg", **synced_context, staging=staging, key=key),
                         {"first_day": first_day, "last_day": last_day}).rowcount
    inserted = sum(1 for (is_new,) in written if is_new)
    return {"rows": staged, "inserted": inserted, "updated": len(written) - inserted, "deleted": deleted,
            "nul_removed": len(nul_values)}


def _copy(duck, pg, table: str, key: list[str], staging: str, names: list[str], first_day: dt.date,
          last_day: dt.date) -> tuple[int, list[str]]:
    """COPY the export's rows of the range into `staging`; return how many, and the text values
    whose NUL characters were removed, each as "<column> of <key> on <date>"."""
    reader = duck.sql(
        f"SELECT * FROM export.{table} WHERE snapshot_date BETWEEN $first_day AND $last_day",
        params={"first_day": first_day, "last_day": last_day},
    ).to_arrow_reader(COPY_BATCH_ROWS)
    column_list = ", ".join(quote(name) for name in names)
    staged, nul_values = 0, []
    with pg.cursor().copy(f"COPY {quote(staging)} ({column_list}) FROM STDIN (FORMAT csv)") as copy:
        for batch in reader:
            batch = _without_nul(batch, key, nul_values)
            buffer = io.BytesIO()
            pa_csv.write_csv(batch, buffer, pa_csv.WriteOptions(include_header=False))
            copy.write(buffer.getvalue())
            staged += batch.num_rows
    return staged, nul_values


def _without_nul(batch: pa.RecordBatch, key: list[str], found: list[str]) -> pa.RecordBatch:
    """`batch` with NUL removed from its text values; each value it was removed from is appended to
    `found`, named by its column and row key (the warehouse keeps the value as it was)."""
    id_column, date_column = key
    columns = []
    for name, column in zip(batch.schema.names, batch.columns):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            has_nul = pc.fill_null(pc.match_substring(column, NUL), False)
            if pc.any(has_nul).as_py():
                rows = zip(pc.filter(batch[id_column], has_nul).to_pylist(),
                           pc.filter(batch[date_column], has_nul).to_pylist())
                found += [f"{name} of {id_column} {row_id!r} on {day}" for row_id, day in rows]
                column = pc.replace_substring(column, NUL, "")
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def _define_view(pg, schema: str, view: str, description: str) -> None:
    """Create the view, or replace it in place, only when its definition differs from the stored
    one (an older pipeline's view with the same definition is kept as it is); set its description
    only when it differs. A view that cannot be replaced in place fails with what to do."""
    context = {"schema": schema, "view": view, "wanted": f"wanted_{view}",
               "query": SQL.render(f"{view}.pg", schema=schema)}
    pg.execute(SQL.render("view_wanted.pg", **context))
    same_definition, same_description = pg.execute(
        SQL.render("view_unchanged.pg"), {**context, "description": description}).fetchone()
    if not same_definition:
        try:
            pg.execute(SQL.render("view_replaced.pg", **context))
        except (psycopg.errors.InvalidTableDefinition, psycopg.errors.WrongObjectType) as exc:
            reason = str(exc).strip().splitlines()[0]
            raise PostgresSyncBlocked(redact(
                f"{schema}.{view}: this version of the pipeline defines the view differently and PostgreSQL "
                f"cannot replace it in place ({reason}); nothing was synced. The sync does not drop it, since "
                f"grants and views built on it would go with it: drop it yourself (DROP VIEW {quote(schema)}."
                f"{quote(view)}; its error lists the views that depend on it), run the sync again, which "
                f"creates it, then grant SELECT on it and re-create those views")) from None
    if not same_description:
        # COMMENT takes no server-side parameter: the client quotes the description as a literal.
        psycopg.ClientCursor(pg).execute(SQL.render("view_description.pg", **context), {"description": description})


def _lock_timeout_line(pg, timed_out: _LockTimedOut, seconds: int) -> str:
    """The failure line for a lock the sync gave up on: the object, the sessions holding a lock on
    it (asked after the rollback, while they still hold it) and what to do."""
    holders = pg.execute(SQL.render("lock_holders.pg"),
                         {"schema": timed_out.schema, "relation": timed_out.relation}).fetchall()
    where = f"{timed_out.schema}.{timed_out.relation}"
    if not holders:
        return (f"{where}: the sync waited {seconds} s for a lock on it, held by another session's transaction, "
                f"and gave up; nothing was synced. That transaction has ended since: run the sync again")
    sessions = "; ".join(_session(*holder) for holder in holders[:NAMED_AT_MOST]) + _and_more(holders)
    pids = ", ".join(str(pid) for pid, *_ in holders[:NAMED_AT_MOST])
    that = "that transaction" if len(holders) == 1 else "those transactions"
    return (f"{where}: the sync waited {seconds} s for a lock on it and gave up; nothing was synced. Held by "
            f"{sessions}. End {that} (COMMIT or ROLLBACK there, or SELECT pg_terminate_backend(pid) for "
            f"pid {pids}) and run the sync again")


def _session(pid: int, user: str, application: str, state: str | None, since: dt.datetime | None) -> str:
    started = f" since {since.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC" if since else ""
    return (f"session pid {pid} (user {user}, application {application!r}, "
            f"{state or 'state hidden from the sync role'}{started})")


def _and_more(items: list) -> str:
    return f" (and {len(items) - NAMED_AT_MOST} more)" if len(items) > NAMED_AT_MOST else ""


def build_postgres_sync() -> dg.AssetsDefinition:
    @daily_asset(
        name="postgres_sync",
        deps=["sync_export", "contact_usage", "band_changes"],
        kinds={"postgres"},
    )
    def postgres_sync(context: dg.AssetExecutionContext, warehouse: Warehouse, postgres: PostgresTarget):
        """The sync tables in PostgreSQL: in schema HEALTH_SYNC_POSTGRES_SCHEMA (default `health`),
        `account_health` (one row per account and snapshot date, keyed on account_id and
        snapshot_date), `contact_usage` (user_id, snapshot_date) and `band_changes` (account_id,
        snapshot_date), each row as in the export of the same name, and two views:
        `account_health_latest`, each account's newest row whatever its date (an account no longer
        scored, churned, keeps its last row), and `account_health_current`, each account's row on
        the newest snapshot date (current customers; churned accounts are absent). Text values
        lose NUL characters, counted per table as `<table>_nul_removed` and named in a warning.
        Skipped without HEALTH_SYNC_POSTGRES_URL.
        """
        if not postgres.configured:
            # Recorded as a materialization that synced nothing, so a backfill of every asset
            # completes cleanly, and the UI says why on the asset's page.
            context.log.info("HEALTH_SYNC_POSTGRES_URL is not set: no PostgreSQL sync")
            yield dg.MaterializeResult(metadata={
                "skipped": dg.MetadataValue.text("HEALTH_SYNC_POSTGRES_URL is not set: nothing was synced"),
                "dagster/row_count": dg.MetadataValue.int(0)})
            return
        first_day, last_day = date_range(context.partition_time_window)
        started = time.perf_counter()
        with warehouse.get_connection() as duck:
            through = refreshed_through(duck, "export.account_health", last_day)
            with postgres.connect() as pg:
                counts = sync_range(duck, pg, postgres.schema_name, first_day, through,
                                    postgres.lock_timeout_seconds, context.log)
        meta = {
            "synced_range": dg.MetadataValue.text(f"{first_day} .. {through}"),
            "schema": dg.MetadataValue.text(postgres.schema_name),
            "seconds": dg.MetadataValue.float(round(time.perf_counter() - started, 2)),
            "dagster/row_count": dg.MetadataValue.int(counts["account_health"]["rows"]),
        }
        for table, figures in counts.items():
            meta.update({f"{table}_{what}": dg.MetadataValue.int(n) for what, n in figures.items()})
        yield dg.MaterializeResult(metadata=meta)
        # The later days the exports rewrote were synced too: recorded like theirs.
        record_refreshed(context, {(last_day + dt.timedelta(days=n)).isoformat(): {}
                                   for n in range(1, (through - last_day).days + 1)})

    return postgres_sync
