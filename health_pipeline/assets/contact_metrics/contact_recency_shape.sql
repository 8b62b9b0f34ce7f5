-- core.contact_recency, created empty when a warehouse has none: per month end and usage events,
-- one row per contact with activity up to that day (_recency.sql, recency_before).
CREATE TABLE IF NOT EXISTS "core"."contact_recency" AS
SELECT CAST(NULL AS DATE) AS "month_end", CAST(NULL AS VARCHAR[]) AS "usage_events", "user_id", "last_seen_at",
       "activity_date" AS "last_usage_date", "activity_date" AS "first_session_date", "first_session_activated"
FROM "core"."daily_contact_activity"
LIMIT 0
