-- Per snapshot date in [$first_day, $last_day]: rows scored, and rows in the sync table.
WITH scored AS (
    SELECT snapshot_date, count(*) AS scored_rows FROM core.account_health
    WHERE snapshot_date BETWEEN $first_day AND $last_day GROUP BY ALL
),
exported AS (
    SELECT snapshot_date, count(*) AS exported_rows FROM export.account_health
    WHERE snapshot_date BETWEEN $first_day AND $last_day GROUP BY ALL
)
SELECT snapshot_date, coalesce(scored_rows, 0), coalesce(exported_rows, 0)
FROM scored FULL JOIN exported USING (snapshot_date)
