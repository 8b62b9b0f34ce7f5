{% import "assets/_shared.sql" as shared %}
-- Every contact of an account in the sync table on $report_date, with its 28-day activity
-- (export.contact_usage), its role that day, whether that makes it a power contact, and whether it
-- went quiet: no usage in the last 28 days after some in the 28 days before, and whether it is dormant:
-- no usage and no session in the last 90 days. A contact shows by email or name only where
-- $personal_data allows (HEALTH_REPORT_PERSONAL_DATA), else by user id: the rows go into the
-- site's data files as they are, so nothing hidden may be among them. One row per account: its
-- contacts as JSON, a list per column (the names once, not once per contact), in the order the
-- account page lists them: most used first, then the most recently seen.
WITH snapshot_dates AS (
    SELECT CAST($report_date AS DATE) AS "snapshot_date"
),
contacts_on_day AS (
    {{ shared.contacts_on_snapshot_dates() }}
),
contacts AS (
    SELECT u."account_id",
           CASE WHEN $personal_data THEN coalesce(u."identity", u."user_id") ELSE u."user_id" END AS "contact",
           c."role", coalesce({{ shared.is_power_contact('c."role"') }}, false) AS "is_power_contact",
           u."active_days_28d", u."sessions_28d", u."usage_28d", u."usage_prev_28d",
           strftime(u."last_seen_at", '%Y-%m-%d') AS "last_seen_on",
           u."usage_28d" = 0 AND u."usage_prev_28d" > 0 AS "went_quiet",
           u."usage_90d" = 0 AND u."sessions_90d" = 0 AS "is_dormant_90d",
           u."last_seen_at", u."identity", u."user_id"
    FROM "export"."contact_usage" u
    LEFT JOIN contacts_on_day c ON c."user_id" = u."user_id"
    WHERE u."snapshot_date" = $report_date
      AND u."account_id" IN (SELECT "account_id" FROM "export"."account_health" WHERE "snapshot_date" = $report_date)
),
{% set columns = ("contact", "role", "is_power_contact", "active_days_28d", "sessions_28d", "usage_28d",
                   "usage_prev_28d", "last_seen_on", "went_quiet", "is_dormant_90d") %}
contacts_in_order AS (
    -- One sorted list of rows per account, taken apart into columns below: a sorted list per
    -- column would sort each account's contacts once per column.
    SELECT "account_id", list(struct_pack(
        {%- for column in columns %}{{ column | quote }}{{ ", " if not loop.last }}{% endfor %})
        ORDER BY "usage_28d" DESC, "last_seen_at" DESC NULLS LAST, "identity", "user_id") AS "rows"
    FROM contacts
    GROUP BY "account_id"
)
SELECT "account_id", to_json(struct_pack(
    {%- for column in columns %}
    {{ column | quote }} := list_transform("rows", lambda r: r.{{ column | quote }}){{ "," if not loop.last }}
    {%- endfor %}
)) AS "contacts"
FROM contacts_in_order
