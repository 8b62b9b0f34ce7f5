{% import "assets/_shared.sql" as shared %}
-- The accounts most at risk on $snapshot_date, as both the UI's preview and the CLI rank them:
-- by band, worst first ($bands lists them best first; an onboarding account's band comes from
-- activation, and band_source says so), then by score, lowest first, then by ARR, largest
-- first. With the account's attributes in force that day.
SELECT h.account_id, a.name, a.owner, CAST(round(a.arr) AS BIGINT) AS arr, h.segment, h.health_score,
       h.health_band, h.band_source, h.score_reason
FROM core.account_health h
JOIN raw.account_history a ON a.account_id = h.account_id AND {{ shared.in_force("a", "h.snapshot_date") }}
WHERE h.snapshot_date = $snapshot_date
ORDER BY list_position($bands::VARCHAR[], h.health_band) DESC, h.health_score, a.arr DESC NULLS LAST, h.account_id
LIMIT $shown
