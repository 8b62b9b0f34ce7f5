{% import "assets/contact_metrics/_recency.sql" as recency %}
-- The checkpoint of $month_end: every contact's recency over the fact's days up to it, built on the
-- latest checkpoint before it and the fact's days since.
INSERT INTO "core"."contact_recency" BY NAME
SELECT CAST($month_end AS DATE) AS "month_end", CAST($usage_events AS VARCHAR[]) AS "usage_events", *
FROM ({{ recency.recency_before(config, "CAST($month_end AS DATE) + 1") }})
