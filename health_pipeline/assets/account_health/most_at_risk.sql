{% import "assets/_shared.sql" as shared %}
-- The accounts most at risk on $snapshot_date, lowest score first, for the UI's preview, with
-- their attributes in force that day.
SELECT h.account_id, a.name, a.owner, CAST(round(a.arr) AS BIGINT) AS arr, h.health_score, h.health_band
FROM core.account_health h
JOIN raw.account_history a ON a.account_id = h.account_id AND {{ shared.in_force("a", "h.snapshot_date") }}
WHERE h.snapshot_date = $snapshot_date
ORDER BY h.health_score, a.arr DESC, h.account_id
LIMIT $shown
