"""Stage a: load raw sessions and events for a range of days into the warehouse.

Each run also snapshots users and accounts, and resolves identity merges into contacts, so
that every later stage works on one clean notion of "a contact".

Every raw row ends in exactly one place: loaded, dropped as a duplicate, left out as an
excluded identity (raw.contacts.excluded_reason says why), or set aside in raw.quarantine
with a reason code and the file and row it came from. Structural problems (a missing table
or column, an unreadable file, a column of the wrong type) fail the run with a RawInputError.
"""

import datetime as dt

import dagster as dg
import duckdb

from health_pipeline.config import Settings
from health_pipeline.resources import RAW_TABLES, RawSource, RawTable
from health_pipeline.stages import stage_asset
from health_pipeline.warehouse import (
    Warehouse,
    date_range,
    replace_date_range,
    replace_table,
    scalar,
    stage,
    table_metadata,
)

# Merge chains longer than this are treated as cycles and stop resolving.
MAX_MERGE_DEPTH = 32

QUARANTINE = "raw.quarantine"
# Outcomes that are not bad input: every other outcome is a quarantine reason code.
LOADED, DUPLICATE, EXCLUDED = "loaded", "duplicate", "excluded"

# (warehouse table, raw table, id column, extra columns)
ACTIVITY_TABLES = (
    ("sessions", "sessions", "session_id", ()),
    ("events", "all_events", "event_id", ("session_id", "event_table_name")),
)


def _classified_sql(read_sql: str, key: str, order: str, attributes: tuple[str, ...]) -> str:
    """Rows of `read_sql` (which computes `problem`) with their outcome: the problem if any; else
    the first copy of each `key` by `order` is loaded, a later identical copy is a duplicate, and
    a later copy whose `attributes` disagree is a conflicting_duplicate."""
    values = "struct_pack(" + ", ".join(f"{a} := {a}" for a in attributes) + ")"
    return f"""
        SELECT *,
               CASE
                   WHEN problem IS NOT NULL THEN problem
                   WHEN row_number() OVER copies = 1 THEN '{LOADED}'
                   WHEN {values} IS NOT DISTINCT FROM first_value({values}) OVER copies THEN '{DUPLICATE}'
                   ELSE 'conflicting_duplicate'
               END AS outcome
        FROM ({read_sql})
        WINDOW copies AS (PARTITION BY {key}, problem IS NULL ORDER BY {order}, source_file, source_row)
    """


def _stage_accounts(conn: duckdb.DuckDBPyConnection, accounts: RawTable) -> None:
    attributes = ("name", "owner", "plan", "arr", "vertical", "customer_since", "status")
    arr = accounts.value("arr", "DOUBLE")
    read_sql = f"""
        SELECT {accounts.column("account_id")}, {accounts.column("name")}, {accounts.column("owner")},
               {accounts.column("plan")}, {accounts.column("arr", "DOUBLE")}, {accounts.column("vertical")},
               {accounts.column("customer_since", "DATE")}, {accounts.column("status")},
               source_file, source_row, {accounts.row_json(RAW_TABLES["accounts"])} AS row_json,
               CASE
                   WHEN account_id IS NULL THEN 'null_id'
                   WHEN {accounts.unreadable("arr")} OR NOT isfinite({arr}) THEN 'unparseable_arr'
                   WHEN {arr} < 0 THEN 'negative_arr'
                   WHEN {accounts.unreadable("customer_since")} THEN 'unparseable_customer_since'
               END AS problem
        FROM {accounts.rows}
    """
    with accounts.reading(conn):
        stage(conn, "accounts_read", _classified_sql(read_sql, "account_id", "customer_since, name", attributes),
              [accounts.location])


def _stage_users(conn: duckdb.DuckDBPyConnection, users: RawTable) -> None:
    attributes = ("identity", "joindate", "account_id", "role")
    read_sql = f"""
        SELECT {users.column("user_id")}, {users.column("identity")}, {users.column("joindate", "DATE")},
               {users.column("account_id")}, {users.column("role")},
               source_file, source_row, {users.row_json((*RAW_TABLES["users"], "role"))} AS row_json,
               CASE
                   WHEN user_id IS NULL THEN 'null_id'
                   WHEN {users.unreadable("joindate")} THEN 'unparseable_joindate'
               END AS problem
        FROM {users.rows}
    """
    with users.reading(conn):
        stage(conn, "users_read", _classified_sql(read_sql, "user_id", "joindate, identity", attributes),
              [users.location])


def _stage_identity_map(conn: duckdb.DuckDBPyConnection, migrations: RawTable | None) -> None:
    """staged_identity_map: every merged-away user id and its final contact id (user_id, contact_id)."""
    if migrations is None:
        stage(conn, "migrations_read", "SELECT NULL::VARCHAR AS outcome, NULL::VARCHAR AS source_file, "
                                       "NULL::BIGINT AS source_row, NULL::JSON AS row_json WHERE false")
        stage(conn, "identity_map", "SELECT NULL::VARCHAR AS user_id, NULL::VARCHAR AS contact_id WHERE false")
        return
    time = migrations.utc_time("time")
    read_sql = f"""
        SELECT {migrations.column("from_user_id")}, {migrations.column("to_user_id")}, {time} AS utc_time,
               source_file, source_row, {migrations.row_json(RAW_TABLES["user_migrations"])} AS row_json,
               CASE
                   WHEN from_user_id IS NULL OR to_user_id IS NULL THEN 'null_id'
                   WHEN time IS NULL THEN 'null_time'
                   WHEN {time} IS NULL THEN 'unparseable_time'
                   WHEN {migrations.value("from_user_id")} = {migrations.value("to_user_id")} THEN 'self_merge'
                   ELSE '{LOADED}'
               END AS outcome
        FROM {migrations.rows}
    """
    with migrations.reading(conn):
        stage(conn, "migrations_read", read_sql, [migrations.location])
    stage(conn, "identity_map", f"""
        WITH RECURSIVE latest_migrations AS (
            -- If an id was merged twice, its latest merge wins.
            SELECT from_user_id, to_user_id
            FROM staged_migrations_read
            WHERE outcome = '{LOADED}'
            QUALIFY row_number() OVER (PARTITION BY from_user_id ORDER BY utc_time DESC, to_user_id) = 1
        ),
        merge_chain(user_id, contact_id, depth) AS (
            SELECT from_user_id, to_user_id, 1 FROM latest_migrations
            UNION ALL
            SELECT c.user_id, m.to_user_id, c.depth + 1
            FROM merge_chain c JOIN latest_migrations m ON m.from_user_id = c.contact_id
            WHERE c.depth < {MAX_MERGE_DEPTH}
        )
        SELECT user_id, arg_max(contact_id, depth) AS contact_id
        FROM merge_chain GROUP BY user_id
    """)


def stage_dimensions(conn: duckdb.DuckDBPyConnection, tables: dict[str, RawTable | None], settings: Settings) -> dict:
    """Stage accounts, contacts and the identity map from the current raw exports, and their bad
    rows into staged_quarantine. Nothing is written to the warehouse yet."""
    _stage_accounts(conn, tables["accounts"])
    stage(conn, "accounts", f"""
        SELECT account_id, name, owner, plan, arr, vertical, customer_since, status
        FROM staged_accounts_read WHERE outcome = '{LOADED}'
    """)
    _stage_users(conn, tables["users"])
    _stage_identity_map(conn, tables["user_migrations"])

    contacts_sql = f"""
        WITH users AS (
            SELECT * FROM staged_users_read WHERE outcome = '{LOADED}'
        ),
        merged_groups AS (
            -- A contact's joindate is the earliest of its own and every user id merged into it.
            SELECT m.contact_id, min(u.joindate) AS joindate, any_value(u.account_id) AS any_account_id
            FROM staged_identity_map m JOIN users u ON u.user_id = m.user_id
            GROUP BY m.contact_id
        ),
        contacts AS (
            SELECT u.user_id, u.identity, least(g.joindate, u.joindate) AS joindate,  -- least skips NULLs
                   coalesce(u.account_id, g.any_account_id) AS account_id, u.role,
                   u.source_file, u.source_row, u.row_json
            FROM users u
            LEFT JOIN merged_groups g ON g.contact_id = u.user_id
            WHERE u.user_id NOT IN (SELECT user_id FROM staged_identity_map WHERE user_id <> contact_id)
        ),
        with_exclusions AS (
            SELECT *,
                   CASE
                       WHEN identity IS NULL OR trim(identity) = '' THEN 'no_identity'
                       WHEN EXISTS (SELECT 1 FROM unnest($patterns::VARCHAR[]) AS p(pattern)
                                    WHERE identity LIKE p.pattern)
                           THEN 'identity_pattern'
                   END AS excluded_reason
            FROM contacts
        )
        -- Excluded identities are left out on purpose, whatever their account: not bad input.
        SELECT *,
               CASE
                   WHEN excluded_reason IS NOT NULL THEN '{EXCLUDED}'
                   WHEN account_id IS NULL THEN 'null_account_id'
                   WHEN account_id IN (SELECT account_id FROM staged_accounts) THEN '{LOADED}'
                   WHEN account_id IN (SELECT account_id FROM staged_accounts_read) THEN 'quarantined_account'
                   ELSE 'unknown_account'
               END AS outcome
        FROM with_exclusions
    """
    stage(conn, "contacts_checked", contacts_sql, {"patterns": list(settings.exclude_identities)})
    stage(conn, "contacts", f"""
        SELECT user_id, identity, joindate, account_id, role, excluded_reason
        FROM staged_contacts_checked WHERE outcome IN ('{LOADED}', '{EXCLUDED}')
    """)

    # Dimension rows describe the current exports, not a day: their partition_date is NULL.
    for source, staged in (("accounts", "accounts_read"), ("users", "users_read"),
                           ("users", "contacts_checked"), ("user_migrations", "migrations_read")):
        _quarantine(conn, source, f"staged_{staged}", "NULL")
    return {
        "contacts_excluded": _count_outcome(conn, "staged_contacts_checked", EXCLUDED),
        "accounts_duplicates_dropped": _count_outcome(conn, "staged_accounts_read", DUPLICATE),
        "users_duplicates_dropped": _count_outcome(conn, "staged_users_read", DUPLICATE),
    }


def _count_outcome(conn: duckdb.DuckDBPyConnection, staged: str, outcome: str) -> int:
    return int(scalar(conn, f"SELECT count(*) FROM {staged} WHERE outcome = ?", [outcome]))


def _quarantine(conn: duckdb.DuckDBPyConnection, source: str, staged: str, partition_date: str,
                row_json: str = "row_json") -> None:
    """Append the bad-input rows of a classified staging table to staged_quarantine."""
    conn.execute(
        f"""
        INSERT INTO staged_quarantine
        SELECT {partition_date}, ?, outcome, source_file, source_row, {row_json}
        FROM {staged}
        WHERE outcome NOT IN ('{LOADED}', '{DUPLICATE}', '{EXCLUDED}')
        """,
        [source],
    )


def _activity_row_json(table: RawTable) -> str:
    """SQL for a staged activity row as the JSON a quarantine row keeps (its time in UTC)."""
    return "to_json(struct_pack(" + ", ".join(
        f"{c} := CAST({c} AS VARCHAR)" for c in RAW_TABLES[table.name]) + "))"


def _classify_activity(conn, table: RawTable, name: str, id_column: str, extra_columns, bounds, future_limit) -> str:
    """Classify the rows of a raw activity table whose UTC time falls in the run's range."""
    time = table.utc_time("time")
    columns = ", ".join(table.column(c) for c in (id_column, "user_id", *extra_columns))
    source_sql = f"""
        SELECT {columns}, {time} AS time, source_file, source_row
        FROM {table.rows}
        WHERE {table.may_be_between("time")} AND {time} >= ? AND {time} < ? AND {time} <= ?
    """
    null_name = "WHEN event_table_name IS NULL THEN 'null_event_name'" if "event_table_name" in extra_columns else ""
    with table.reading(conn):
        stage(conn, f"{name}_source", source_sql, [table.location, *bounds, *bounds, future_limit])
    # Re-synced exports repeat rows: keep one per id, the earliest. About 1 % of ids repeat, so
    # only their rows are ordered; ordering every row was the raw stage's largest cost. DuckDB
    # would materialise the CTEs read twice: only the small list of repeated ids is worth it.
    return stage(conn, f"{name}_read", f"""
        WITH checked AS NOT MATERIALIZED (
            SELECT *,
                   CASE
                       WHEN {id_column} IS NULL THEN 'null_id'
                       WHEN user_id IS NULL THEN 'null_user_id'
                       {null_name}
                   END AS problem
            FROM staged_{name}_source
        ),
        valid AS NOT MATERIALIZED (
            SELECT * FROM checked WHERE problem IS NULL
        ),
        repeated_ids AS MATERIALIZED (
            SELECT {id_column} FROM valid GROUP BY {id_column} HAVING count(*) > 1
        ),
        deduplicated AS (
            SELECT * FROM checked WHERE problem IS NOT NULL
            UNION ALL
            SELECT * FROM valid ANTI JOIN repeated_ids USING ({id_column})
            UNION ALL
            SELECT * REPLACE (
                       CASE WHEN row_number() OVER (PARTITION BY {id_column}
                                                    ORDER BY time, user_id, source_file, source_row) > 1
                            THEN '{DUPLICATE}' END AS problem)
            FROM valid SEMI JOIN repeated_ids USING ({id_column})
        ),
        attributed AS (
            -- Rows of a merged-away id count for the contact it was merged into.
            SELECT d.*, coalesce(m.contact_id, d.user_id) AS contact_id
            FROM deduplicated d LEFT JOIN staged_identity_map m ON m.user_id = d.user_id
        )
        SELECT a.*,
               CASE
                   WHEN a.problem IS NOT NULL THEN a.problem
                   WHEN c.excluded_reason IS NOT NULL THEN '{EXCLUDED}'
                   WHEN c.user_id IS NOT NULL THEN '{LOADED}'
                   WHEN a.contact_id IN (SELECT user_id FROM staged_users_read) THEN 'quarantined_user'
                   ELSE 'unknown_user'
               END AS outcome
        FROM attributed a LEFT JOIN staged_contacts c ON c.user_id = a.contact_id
    """)


def _stage_undated(conn, table: RawTable, future_limit: dt.datetime) -> None:
    """Quarantine the rows of a raw activity table that no partition can hold: no time, an
    unparseable time, or a time further in the future than the tolerance."""
    time = table.utc_time("time")
    with table.reading(conn):
        conn.execute(
            f"""
            INSERT INTO staged_quarantine
            SELECT NULL, ?, CASE WHEN time IS NULL THEN 'null_time'
                                 WHEN {time} IS NULL THEN 'unparseable_time'
                                 ELSE 'future_time' END,
                   source_file, source_row, {table.row_json(RAW_TABLES[table.name])}
            FROM {table.rows}
            WHERE time IS NULL OR {time} IS NULL OR {time} > ?
            """,
            [table.name, table.location, future_limit],
        )


def stage_activity(conn, table: RawTable, name: str, id_column: str, extra_columns, bounds, future_limit) -> dict:
    """Stage one raw activity table's rows for the range (staged_<name>) and its bad rows; return
    what was read, dropped, quarantined and kept."""
    staged = _classify_activity(conn, table, name, id_column, extra_columns, bounds, future_limit)
    # A view, not a copy: the loaded rows are read once, by the swap into raw.<name>.
    conn.execute(f"""
        CREATE OR REPLACE TEMP VIEW staged_{name} AS
        SELECT CAST(time AS DATE) AS activity_date, {id_column}, contact_id AS user_id,
               {''.join(f'{c}, ' for c in extra_columns)}time
        FROM {staged} WHERE outcome = '{LOADED}'
    """)
    _quarantine(conn, table.name, staged, "CAST(time AS DATE)", _activity_row_json(table))
    _stage_undated(conn, table, future_limit)
    outcomes = dict(conn.execute(f"SELECT outcome, count(*) FROM {staged} GROUP BY outcome").fetchall())
    read = sum(outcomes.values())
    return {
        f"{name}_read": read,
        f"{name}_duplicates_dropped": outcomes.get(DUPLICATE, 0),
        f"{name}_from_excluded_users": outcomes.get(EXCLUDED, 0),
        f"{name}_quarantined": read - sum(outcomes.get(o, 0) for o in (LOADED, DUPLICATE, EXCLUDED)),
        f"{name}_loaded": outcomes.get(LOADED, 0),
    }


def extract(conn: duckdb.DuckDBPyConnection, raw: RawSource, settings: Settings,
            first_day: dt.date, last_day: dt.date, now: dt.datetime) -> dict:
    """Snapshot the dimensions, load sessions and events for [first_day, last_day], and replace
    the range's quarantine rows. `now` is the run's clock (UTC, naive) for the future-time rule.
    Returns the figures the asset reports.

    Every raw file is read before anything is written, so bad input that fails the run leaves
    the warehouse as it was.
    """
    tables = {name: raw.table(conn, name) for name in RAW_TABLES}
    conn.execute("""
        CREATE OR REPLACE TEMP TABLE staged_quarantine (
            partition_date DATE, source_table VARCHAR, reason VARCHAR,
            source_file VARCHAR, source_row BIGINT, row_json JSON
        )
    """)
    future_limit = now + dt.timedelta(hours=raw.future_tolerance_hours)
    bounds = [dt.datetime.combine(day, dt.time()) for day in (first_day, last_day + dt.timedelta(days=1))]
    counts = stage_dimensions(conn, tables, settings)
    for name, raw_name, id_column, extra_columns in ACTIVITY_TABLES:
        counts |= stage_activity(conn, tables[raw_name], name, id_column, extra_columns, bounds, future_limit)

    counts["accounts"] = replace_table(conn, "raw.accounts", "staged_accounts")
    counts["contacts"] = replace_table(conn, "raw.contacts", "staged_contacts")
    replace_table(conn, "raw.identity_map", "staged_identity_map")
    for name, *_ in ACTIVITY_TABLES:
        replace_date_range(conn, f"raw.{name}", "activity_date", first_day, last_day, f"staged_{name}")
    counts["quarantined_rows"] = replace_date_range(
        conn, QUARANTINE, "partition_date", first_day, last_day, "staged_quarantine")
    for source, reason, n in conn.execute(
        "SELECT source_table, reason, count(*) FROM staged_quarantine GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        counts[f"quarantined.{source}.{reason}"] = n
    return counts


def build_raw_activity(settings: Settings) -> dg.AssetsDefinition:
    @stage_asset(
        name="raw_activity",
        kinds={"duckdb", "parquet"},
        code_version=settings.metrics_version,
    )
    def raw_activity(
        context: dg.AssetExecutionContext, warehouse: Warehouse, raw_source: RawSource
    ) -> dg.MaterializeResult:
        """One row of `raw.events` per product event, and of `raw.sessions` per session, in UTC.

        Rows are deduplicated by event_id / session_id, attributed to the contact they were merged
        into, and limited to counted contacts: excluded identities (internal, test, no identity)
        are left out. Each run also refreshes the `raw.accounts`, `raw.contacts` and
        `raw.identity_map` snapshots from the current exports.

        Bad rows go to `raw.quarantine`, one row per raw row set aside: partition_date (its UTC
        day; NULL for rows of users, accounts or merges, and for rows with no usable time),
        source_table, reason, source_file, source_row and the row as JSON.
        """
        first_day, last_day = date_range(context.partition_time_window)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with warehouse.get_connection() as conn:
            counts = extract(conn, raw_source, settings, first_day, last_day, now)
            meta = table_metadata(
                conn, "raw.events", counts["events_loaded"], **counts,
                first_day=str(first_day), last_day=str(last_day),
            )
        return dg.MaterializeResult(metadata=meta)

    return raw_activity
