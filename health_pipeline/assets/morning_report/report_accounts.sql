{% import "assets/_shared.sql" as shared %}
-- Every account in the sync table on $report_date, in the one "most at risk" ranking: the rows of
-- the portfolio's tables, the owner pages' cards and the account pages, with what moved since the
-- day before (what_changed) and since 7 days before (what_changed_7d; shared.what_changed).
SELECT h.*,
       {{ shared.what_changed("h", "yesterday", config) }} AS "what_changed",
       {{ shared.what_changed("h", "week_ago", config) }} AS "what_changed_7d"
FROM "export"."account_health" h
{{ shared.yesterday_and_week_ago("h", "export") }}
WHERE h."snapshot_date" = $report_date
ORDER BY {{ shared.most_at_risk_first('h."health_band"', 'h."health_score"', 'h."arr"', 'h."account_id"') }}
