"""Stage a: load raw sessions and events for a range of days into the warehouse.

Each run also snapshots users and accounts, and resolves identity merges into contacts, so
that every later stage works on one clean notion of "a contact".
"""



import dagster as dg
import duckdb

from health_pipeline.config import Settings
from health_pipeline.partitions import daily_partitions
from health_pipeline.resources import RawSource, RawTable
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


def snapshot_dimensions(conn: duckdb.DuckDBPyConnection, raw: RawSource, settings: Settings) -> dict:
    """Replace raw.accounts, raw.contacts and raw.identity_map from the current raw exports."""
    users = raw.table(conn, "users")
    accounts = raw.table(conn, "accounts")
    migrations = raw.table(conn, "user_migrations")

    accounts_sql = f"""
        SELECT {accounts.column("account_id", "VARCHAR")}, {accounts.column("name", "VARCHAR")},
               {accounts.column("owner", "VARCHAR")}, {accounts.column("plan", "VARCHAR")},
               {accounts.column("arr", "DOUBLE")}, {accounts.column("vertical", "VARCHAR")},
               {accounts.column("customer_since", "DATE")}, {accounts.column("status", "VARCHAR")}
        FROM {accounts.reader}
        WHERE account_id IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY account_id ORDER BY customer_since, name) = 1
    """
    n_accounts = replace_table(conn, "raw.accounts", stage(conn, "accounts", accounts_sql, [accounts.location]))

    # Users deduplicated by id; each id then mapped to the contact it was merged into.
    users_sql = f"""
        SELECT {users.column("user_id", "VARCHAR")}, {users.column("identity", "VARCHAR")},
               {users.column("joindate", "DATE")}, {users.column("account_id", "VARCHAR")},
               {users.column("role", "VARCHAR")}
        FROM {users.reader}
        WHERE user_id IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY joindate, identity) = 1
    """
    stage(conn, "users", users_sql, [users.location])
    stage(conn, "identity_map", _identity_map_sql(migrations), [migrations.location] if migrations else [])

    contacts_sql = """
        WITH merged_groups AS (
            -- A contact's joindate is the earliest of every user id merged into it.
            SELECT m.contact_id, min(u.joindate) AS joindate, any_value(u.account_id) AS any_account_id
            FROM staged_identity_map m JOIN staged_users u ON u.user_id = m.user_id
            GROUP BY m.contact_id
        ),
        contacts AS (
            SELECT u.user_id, u.identity, coalesce(g.joindate, u.joindate) AS joindate,
                   coalesce(u.account_id, g.any_account_id) AS account_id, u.role
            FROM staged_users u
            LEFT JOIN merged_groups g ON g.contact_id = u.user_id
            WHERE u.user_id NOT IN (SELECT user_id FROM staged_identity_map WHERE user_id <> contact_id)
        )
        SELECT *,
               CASE
                   WHEN identity IS NULL OR trim(identity) = '' THEN 'no_identity'
                   WHEN EXISTS (SELECT 1 FROM unnest(?::VARCHAR[]) AS p(pattern) WHERE identity LIKE p.pattern)
                       THEN 'identity_pattern'
               END AS excluded_reason
        FROM contacts
    """
    n_contacts = replace_table(
        conn, "raw.contacts", stage(conn, "contacts", contacts_sql, [list(settings.exclude_identities)])
    )
    replace_table(conn, "raw.identity_map", "staged_identity_map")
    excluded = scalar(conn, "SELECT count(*) FROM raw.contacts WHERE excluded_reason IS NOT NULL")
    return {"accounts": n_accounts, "contacts": n_contacts, "contacts_excluded": excluded}


def _identity_map_sql(migrations: RawTable | None) -> str:
    """SQL mapping every merged-away user id to its final contact id (user_id, contact_id)."""
    if migrations is None:
        return "SELECT NULL::VARCHAR AS user_id, NULL::VARCHAR AS contact_id WHERE false"
    return f"""
        WITH RECURSIVE latest_migrations AS (
            -- If an id was merged twice, its latest merge wins.
            SELECT CAST(from_user_id AS VARCHAR) AS from_user_id, CAST(to_user_id AS VARCHAR) AS to_user_id
            FROM {migrations.reader}
            WHERE from_user_id IS NOT NULL AND to_user_id IS NOT NULL
              AND CAST(from_user_id AS VARCHAR) <> CAST(to_user_id AS VARCHAR)
            QUALIFY row_number() OVER (PARTITION BY from_user_id ORDER BY time DESC, to_user_id) = 1
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
    """


def _source_rows_sql(table: RawTable, id_column: str, extra_columns: tuple[str, ...]) -> str:
    """The rows of a raw activity table whose UTC time falls in [?, ?), as read."""
    time = table.utc_time("time")
    columns = ", ".join(table.column(c, "VARCHAR") for c in (id_column, "user_id", *extra_columns))
    return f"""
        SELECT {columns}, {time} AS time
        FROM {table.reader}
        WHERE {time} >= ? AND {time} < ?
    """


def _counted_rows_sql(source: str, id_column: str) -> str:
    """Source rows deduplicated by id and attributed to counted contacts."""
    return f"""
        WITH deduplicated AS (
            -- Re-synced exports repeat rows: keep one per id, the earliest.
            SELECT * FROM {source}
            WHERE {id_column} IS NOT NULL AND user_id IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY {id_column} ORDER BY time, user_id) = 1
        ),
        attributed AS (
            SELECT d.* REPLACE (coalesce(m.contact_id, d.user_id) AS user_id)
            FROM deduplicated d LEFT JOIN raw.identity_map m ON m.user_id = d.user_id
        )
        SELECT CAST(a.time AS DATE) AS activity_date, a.*
        FROM attributed a JOIN raw.contacts c ON c.user_id = a.user_id
        WHERE c.excluded_reason IS NULL
    """


def _load_activity(conn, table: RawTable, name: str, id_column: str, extra_columns, bounds, days) -> dict:
    """Load one raw activity table for the range; return what was read, dropped and kept."""
    source = stage(conn, f"{name}_source", _source_rows_sql(table, id_column, extra_columns),
                   [table.location, *bounds])
    counted = stage(conn, name, _counted_rows_sql(source, id_column))
    kept = replace_date_range(conn, f"raw.{name}", "activity_date", *days, counted)
    read, distinct = conn.execute(
        f"SELECT count(*), count(DISTINCT {id_column}) FROM {source}"
    ).fetchall()[0]
    return {
        f"{name}_read": read,
        f"{name}_duplicates_dropped": read - distinct,
        f"{name}_from_excluded_or_unknown_users": distinct - kept,
        f"{name}_loaded": kept,
    }


def build_raw_activity(settings: Settings) -> dg.AssetsDefinition:
    @dg.asset(
        name="raw_activity",
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"duckdb", "parquet"},
        group_name="health",
        pool=Warehouse.POOL,
    )
    def raw_activity(
        context: dg.AssetExecutionContext, warehouse: Warehouse, raw_source: RawSource
    ) -> dg.MaterializeResult:
        """One row of `raw.events` per product event, and of `raw.sessions` per session, in UTC.

        Rows are deduplicated by event_id / session_id, attributed to the contact they were merged
        into, and limited to counted contacts: excluded (internal, test, no identity) and unknown
        users are dropped. Each run also refreshes the `raw.accounts`, `raw.contacts` and
        `raw.identity_map` snapshots from the current exports.
        """
        first_day, last_day = date_range(context.partition_time_window)
        bounds = [context.partition_time_window.start.replace(tzinfo=None),
                  context.partition_time_window.end.replace(tzinfo=None)]
        with warehouse.get_connection() as conn:
            dims = snapshot_dimensions(conn, raw_source, settings)
            days = (first_day, last_day)
            counts = {
                **_load_activity(conn, raw_source.table(conn, "sessions"), "sessions", "session_id", (),
                                 bounds, days),
                **_load_activity(conn, raw_source.table(conn, "all_events"), "events", "event_id",
                                 ("session_id", "event_table_name"), bounds, days),
            }
            meta = table_metadata(
                conn, "raw.events", counts["events_loaded"], **counts, **dims,
                first_day=str(first_day), last_day=str(last_day),
            )
        return dg.MaterializeResult(metadata=meta)

    return raw_activity
