-- Accounts per band on $snapshot_date with their share and score range, for the UI's preview.
WITH band_scores AS (
    SELECT health_band, health_score, count(*) OVER () AS accounts_scored
    FROM core.account_health WHERE snapshot_date = $snapshot_date
)
SELECT health_band, count(*) AS accounts, round(100 * count(*) / any_value(accounts_scored), 1) AS share,
       min(health_score), median(health_score), max(health_score)
FROM band_scores GROUP BY health_band ORDER BY min(health_score)
