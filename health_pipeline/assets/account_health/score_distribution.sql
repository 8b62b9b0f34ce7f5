-- Accounts per band on $snapshot_date with their share and score range, and how many of them an
-- onboarding activation banded (their scores can lie outside the band's cut-offs), for the UI's preview.
WITH band_scores AS (
    SELECT health_band, health_score, band_source, count(*) OVER () AS accounts_scored
    FROM core.account_health WHERE snapshot_date = $snapshot_date
)
SELECT health_band, count(*) AS accounts, round(100 * count(*) / any_value(accounts_scored), 1) AS share,
       count(*) FILTER (WHERE band_source = 'activation') AS banded_by_activation,
       min(health_score), median(health_score), max(health_score)
FROM band_scores GROUP BY health_band ORDER BY min(health_score)
