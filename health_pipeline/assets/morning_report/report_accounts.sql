{% import "assets/_shared.sql" as shared %}
-- Every account in the sync table on $report_date, in the one "most at risk" ranking: the rows of
-- the portfolio's tables, the owner pages' cards and the account pages.
SELECT *
FROM "export"."account_health"
WHERE "snapshot_date" = $report_date
ORDER BY {{ shared.most_at_risk_first('"health_band"', '"health_score"', '"arr"', '"account_id"') }}
