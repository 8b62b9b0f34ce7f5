-- Established accounts (banded by their health score, not by onboarding activation) and their ARR
-- per band on $report_date, 7 days and 28 days before: the portfolio's band table. A compared day
-- with no scores at all (before the history starts) has no rows, so its change is unknown.
WITH compared_days AS (
    SELECT "days_ago", CAST($report_date - "days_ago" AS DATE) AS "snapshot_date"
    FROM unnest([0, 7, 28]) AS t("days_ago")
),
compared_days_scored AS (
    SELECT c.* FROM compared_days c
    WHERE EXISTS (SELECT 1 FROM "export"."account_health" h WHERE h."snapshot_date" = c."snapshot_date")
)
SELECT c."days_ago", b."band", count(h."account_id") AS "accounts", coalesce(sum(h."arr"), 0) AS "arr"
FROM compared_days_scored c
CROSS JOIN unnest($bands::VARCHAR[]) AS b("band")
LEFT JOIN "export"."account_health" h
       ON h."snapshot_date" = c."snapshot_date" AND h."health_band" = b."band" AND h."band_source" = 'score'
GROUP BY c."days_ago", b."band"
ORDER BY c."days_ago", list_position($bands::VARCHAR[], b."band")
