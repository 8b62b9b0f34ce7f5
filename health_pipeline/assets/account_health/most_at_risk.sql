-- The accounts most at risk on $snapshot_date, lowest score first, for the UI's preview.
SELECT h.account_id, a.name, a.owner, CAST(round(a.arr) AS BIGINT) AS arr, h.health_score, h.health_band
FROM core.account_health h JOIN raw.accounts a USING (account_id)
WHERE h.snapshot_date = $snapshot_date
ORDER BY h.health_score, a.arr DESC, h.account_id
LIMIT $shown
