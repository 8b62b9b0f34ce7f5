"""The seed approach, written faithfully as a baseline: one SQL view over the raw events.

The write-ups this project follows (Heap's health-score recipe) create a view that, every
day, counts each user's events and sessions in 30- and 90-day windows straight from the raw
Heap tables, keeps the users with a real identity, and rolls the users up to accounts in the
CS tool. This module does the same with this project's definitions (docs/metrics.md), so the
values can be compared column for column: W28 / P28 / W90 windows, deduplication by id,
identity merges, the exclusion patterns, and the account rollup of core.account_metrics.

The snapshot date, the event names and the file locations are DuckDB variables, so the view
is one fixed SQL text, as a view in a warehouse would be. It reads the raw files in place;
DuckDB skips the parquet row groups outside the windows, as a warehouse would prune them.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sources import FolderSource

# Per contact and account, for the snapshot date in the variable `snapshot_date`.
SEED_VIEWS_SQL = """
CREATE OR REPLACE TEMP VIEW seed_contact_usage AS
WITH snapshot AS (
    SELECT getvariable('snapshot_date')::DATE AS d
),
users_deduplicated AS (
    SELECT CAST(user_id AS VARCHAR) AS user_id, CAST(identity AS VARCHAR) AS identity,
           CAST(joindate AS DATE) AS joindate, CAST(account_id AS VARCHAR) AS account_id
    FROM read_parquet(getvariable('users_location'))
    WHERE user_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY joindate, identity) = 1
),
latest_merges AS (
    SELECT CAST(from_user_id AS VARCHAR) AS from_id, CAST(to_user_id AS VARCHAR) AS to_id
    FROM read_parquet(getvariable('migrations_location'))
    WHERE from_user_id IS NOT NULL AND to_user_id IS NOT NULL
      AND CAST(from_user_id AS VARCHAR) <> CAST(to_user_id AS VARCHAR)
    QUALIFY row_number() OVER (PARTITION BY from_user_id ORDER BY time DESC, to_user_id) = 1
),
merge_chains AS (
    -- Follow a -> b -> c to its end; a chain longer than 32 is a cycle and stops.
    WITH RECURSIVE chain(user_id, contact_id, depth) AS (
        SELECT from_id, to_id, 1 FROM latest_merges
        UNION ALL
        SELECT c.user_id, m.to_id, c.depth + 1
        FROM chain c JOIN latest_merges m ON m.from_id = c.contact_id
        WHERE c.depth < 32
    )
    SELECT user_id, arg_max(contact_id, depth) AS contact_id FROM chain GROUP BY user_id
),
contacts AS (
    -- Every user id that was not merged away, with the earliest joindate of its merged ids.
    SELECT u.user_id, u.identity,
           least(u.joindate, min(merged.joindate)) AS joindate,
           coalesce(u.account_id, any_value(merged.account_id)) AS account_id
    FROM users_deduplicated u
    LEFT JOIN merge_chains m ON m.contact_id = u.user_id
    LEFT JOIN users_deduplicated merged ON merged.user_id = m.user_id
    WHERE u.user_id NOT IN (SELECT user_id FROM merge_chains)
    GROUP BY u.user_id, u.identity, u.joindate, u.account_id
),
counted_contacts AS (
    -- "where email is not null and email not like '%@garbage%' and email not like ''"
    SELECT c.* FROM contacts c, snapshot s
    WHERE nullif(trim(c.identity), '') IS NOT NULL
      AND NOT coalesce(list_bool_or([c.identity LIKE p FOR p IN getvariable('exclude_identities')]), false)
      AND coalesce(c.joindate, DATE '0001-01-01') <= s.d
      -- A user of no known account is not a contact (the pipeline quarantines them).
      AND c.account_id IN (SELECT CAST(account_id AS VARCHAR) FROM read_parquet(getvariable('accounts_location')))
),
events_90d AS (
    -- Each event once, by id, earliest row first, for W90.
    SELECT e.event_id, coalesce(m.contact_id, CAST(e.user_id AS VARCHAR)) AS user_id,
           CAST(e.time AS DATE) AS day, e.event_table_name
    FROM read_parquet(getvariable('events_location')) e
    LEFT JOIN merge_chains m ON m.user_id = CAST(e.user_id AS VARCHAR), snapshot s
    WHERE e.time >= s.d - 89 AND e.time < s.d + 1 AND e.event_id IS NOT NULL AND e.user_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY e.event_id ORDER BY e.time, e.user_id) = 1
),
sessions_90d AS (
    SELECT coalesce(m.contact_id, CAST(x.user_id AS VARCHAR)) AS user_id, CAST(x.time AS DATE) AS day
    FROM read_parquet(getvariable('sessions_location')) x
    LEFT JOIN merge_chains m ON m.user_id = CAST(x.user_id AS VARCHAR), snapshot s
    WHERE x.time >= s.d - 89 AND x.time < s.d + 1 AND x.session_id IS NOT NULL AND x.user_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY x.session_id ORDER BY x.time, x.user_id) = 1
),
event_metrics AS (
    SELECT e.user_id,
           count(*) FILTER (WHERE e.day >= s.d - 27 AND list_contains(getvariable('usage_events'), e.event_table_name))
               AS usage_28d,
           count(*) FILTER (WHERE e.day BETWEEN s.d - 55 AND s.d - 28
                            AND list_contains(getvariable('usage_events'), e.event_table_name)) AS usage_prev_28d,
           count(*) FILTER (WHERE list_contains(getvariable('usage_events'), e.event_table_name)) AS usage_90d,
           count(*) FILTER (WHERE e.day >= s.d - 27 AND e.event_table_name = getvariable('kpi_event')) AS kpi_28d,
           count(DISTINCT e.event_table_name) FILTER (
               WHERE e.day >= s.d - 27 AND list_contains(getvariable('feature_events'), e.event_table_name)
           ) AS features_used_28d,
           list_distinct(list(e.event_table_name) FILTER (
               WHERE e.day >= s.d - 27 AND list_contains(getvariable('feature_events'), e.event_table_name)
           )) AS features_28d
    FROM events_90d e, snapshot s
    GROUP BY e.user_id
),
session_metrics AS (
    SELECT x.user_id,
           count(*) FILTER (WHERE x.day >= s.d - 27) AS sessions_28d,
           count(*) AS sessions_90d
    FROM sessions_90d x, snapshot s
    GROUP BY x.user_id
),
last_usage AS (
    -- "most recent" over the whole history: a max, which duplicates cannot change.
    SELECT coalesce(m.contact_id, CAST(e.user_id AS VARCHAR)) AS user_id, max(CAST(e.time AS DATE)) AS last_usage_date
    FROM read_parquet(getvariable('events_location')) e
    LEFT JOIN merge_chains m ON m.user_id = CAST(e.user_id AS VARCHAR), snapshot s
    WHERE e.time < s.d + 1 AND list_contains(getvariable('usage_events'), e.event_table_name)
    GROUP BY ALL
)
SELECT s.d AS snapshot_date, c.user_id, c.account_id,
       coalesce(x.sessions_28d, 0) AS sessions_28d, coalesce(x.sessions_90d, 0) AS sessions_90d,
       coalesce(e.usage_28d, 0) AS usage_28d, coalesce(e.usage_prev_28d, 0) AS usage_prev_28d,
       coalesce(e.usage_90d, 0) AS usage_90d, coalesce(e.kpi_28d, 0) AS kpi_28d,
       coalesce(e.features_28d, []) AS features_28d, l.last_usage_date
FROM counted_contacts c CROSS JOIN snapshot s
LEFT JOIN event_metrics e ON e.user_id = c.user_id
LEFT JOIN session_metrics x ON x.user_id = c.user_id
LEFT JOIN last_usage l ON l.user_id = c.user_id;

-- The rollup a CS tool does on the synced contacts: one row per account on the snapshot date.
CREATE OR REPLACE TEMP VIEW seed_account_usage AS
WITH accounts AS (
    SELECT DISTINCT CAST(account_id AS VARCHAR) AS account_id
    FROM read_parquet(getvariable('accounts_location')) WHERE account_id IS NOT NULL
),
per_account AS (
    SELECT account_id,
           count(*) AS contacts_total,
           count(*) FILTER (WHERE usage_28d > 0) AS active_users_28d,
           count(*) FILTER (WHERE usage_prev_28d > 0) AS active_users_prev_28d,
           sum(usage_28d) AS usage_28d, sum(usage_prev_28d) AS usage_prev_28d,
           sum(sessions_28d) AS sessions_28d, max(usage_28d) AS top_user_usage_28d,
           length(list_distinct(flatten(list(features_28d)))) AS features_adopted_28d,
           count(*) FILTER (WHERE kpi_28d > 0) AS kpi_users_28d,
           max(last_usage_date) AS last_usage_date, sum(usage_90d) AS usage_90d
    FROM seed_contact_usage GROUP BY account_id
)
SELECT getvariable('snapshot_date')::DATE AS snapshot_date, a.account_id,
       coalesce(p.contacts_total, 0) AS contacts_total,
       coalesce(p.active_users_28d, 0) AS active_users_28d,
       coalesce(p.active_users_prev_28d, 0) AS active_users_prev_28d,
       CAST(coalesce(p.usage_28d, 0) AS BIGINT) AS usage_28d,
       CAST(coalesce(p.usage_prev_28d, 0) AS BIGINT) AS usage_prev_28d,
       (p.usage_28d - p.usage_prev_28d) / nullif(p.usage_prev_28d, 0) AS usage_change_pct,
       (p.active_users_28d - p.active_users_prev_28d) / nullif(p.active_users_prev_28d, 0)
           AS active_users_change_pct,
       CAST(coalesce(p.sessions_28d, 0) AS BIGINT) AS sessions_28d,
       p.active_users_28d / nullif(p.contacts_total, 0) AS breadth_28d,
       p.top_user_usage_28d / nullif(p.usage_28d, 0) AS top_user_share_28d,
       coalesce(p.features_adopted_28d, 0) AS features_adopted_28d,
       coalesce(p.kpi_users_28d, 0) AS kpi_users_28d,
       CAST(getvariable('snapshot_date')::DATE - p.last_usage_date AS INTEGER) AS days_since_last_active,
       coalesce(p.usage_90d, 0) = 0 AS is_inactive_90d
FROM accounts a LEFT JOIN per_account p ON p.account_id = a.account_id;
"""

# Columns the baseline shares with core.account_metrics and core.contact_metrics.
SHARED_ACCOUNT_COLUMNS = (
    "contacts_total", "active_users_28d", "active_users_prev_28d", "usage_28d", "usage_prev_28d",
    "usage_change_pct", "active_users_change_pct", "sessions_28d", "breadth_28d", "top_user_share_28d",
    "features_adopted_28d", "kpi_users_28d", "days_since_last_active", "is_inactive_90d",
)
SHARED_CONTACT_COLUMNS = (
    "account_id", "sessions_28d", "sessions_90d", "usage_28d", "usage_prev_28d", "usage_90d", "kpi_28d",
    "last_usage_date",
)


def define_seed_views(conn: duckdb.DuckDBPyConnection, raw_dir: str, settings: HealthConfig,
                      snapshot_date: dt.date) -> None:
    """Point the seed views at a raw export directory and a snapshot date."""
    raw = FolderSource(raw_dir=raw_dir)
    variables = {
        "snapshot_date": snapshot_date,
        "users_location": list(raw.table(conn, "users").files),
        "accounts_location": list(raw.table(conn, "accounts").files),
        "migrations_location": list(raw.table(conn, "user_migrations").files),
        "events_location": list(raw.table(conn, "all_events").files),
        "sessions_location": list(raw.table(conn, "sessions").files),
        "usage_events": list(settings.usage_events),
        "kpi_event": settings.kpi_event,
        "feature_events": list(settings.feature_events),
        "exclude_identities": list(settings.exclude_identities),
    }
    for name, value in variables.items():
        conn.execute(f"SET VARIABLE {name} = ?", [value])
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute(SEED_VIEWS_SQL)


def run_seed(conn: duckdb.DuckDBPyConnection, raw_dir: str, settings: HealthConfig, snapshot_date: dt.date) -> int:
    """Recompute one day's account metrics the seed way into seed_account_usage_result; return its rows."""
    define_seed_views(conn, raw_dir, settings, snapshot_date)
    conn.execute("CREATE OR REPLACE TEMP TABLE seed_account_usage_result AS SELECT * FROM seed_account_usage")
    return conn.execute("SELECT count(*) FROM seed_account_usage_result").fetchall()[0][0]
