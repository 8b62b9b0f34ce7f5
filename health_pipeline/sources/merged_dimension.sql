-- A dimension table (users, user_migrations) as landed: the rows landed before and a delivery's
-- ($version, its dump), keeping for each key the rows of the latest version, so a later dump's row
-- for a user replaces the earlier one. All rows of that version are kept: a key repeated within
-- one delivery is the export's own conflict, which raw_activity quarantines. The rows keep their
-- order (by version, then as delivered: `landed_row`), so a quarantined row's position in the file
-- is where the delivery had it.
WITH every_version AS (
    {% if earlier %}
    SELECT * EXCLUDE ("file_row_number"), "file_row_number" AS "landed_row"
    FROM read_parquet($earlier, file_row_number = true)
    UNION ALL BY NAME
    {% endif %}
    SELECT *, $version AS "landed_version" FROM delivered_rows
),
latest_version AS (
    SELECT *, max("landed_version") OVER (PARTITION BY {{ key | quote }}) AS "latest_of_key"
    FROM every_version
)
SELECT * EXCLUDE ("latest_of_key", "landed_row")
FROM latest_version
WHERE "landed_version" = "latest_of_key"
ORDER BY "landed_version", "landed_row"
