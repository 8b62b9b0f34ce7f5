-- Established accounts (banded by their health score, not by onboarding activation) per band on
-- each of the 90 days up to $report_date: the portfolio's band-share chart.
SELECT "snapshot_date", "health_band" AS "band", count(*) AS "accounts"
FROM "export"."account_health"
WHERE "snapshot_date" BETWEEN $first_day AND $report_date AND "band_source" = 'score'
GROUP BY "snapshot_date", "health_band"
ORDER BY "snapshot_date", list_position($bands::VARCHAR[], "health_band")
