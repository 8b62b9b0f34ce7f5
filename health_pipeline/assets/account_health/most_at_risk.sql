{% import "assets/_shared.sql" as shared %}
-- The $shown accounts most at risk on $snapshot_date, in the one ranking (shared.most_at_risk_first)
-- that the UI's preview, the CLI and the morning report use. With the account's attributes in force that day.
SELECT h.account_id, a.name, a.owner, CAST(round(a.arr) AS BIGINT) AS arr, h.segment, h.health_score,
       h.health_band, h.band_source, h.score_reason
FROM core.account_health h
JOIN raw.account_history a ON a.account_id = h.account_id AND {{ shared.in_force("a", "h.snapshot_date") }}
WHERE h.snapshot_date = $snapshot_date
ORDER BY {{ shared.most_at_risk_first("h.health_band", "h.health_score", "a.arr", "h.account_id") }}
LIMIT $shown
