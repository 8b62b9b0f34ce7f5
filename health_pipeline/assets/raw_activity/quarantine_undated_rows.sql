{% import "assets/raw_activity/_raw_columns.sql" as raw %}
-- Append the rows of a raw activity table that no partition can hold to quarantine_rows: no
-- time, an unparseable time, or a time further past $future_limit than the tolerance allows.
INSERT INTO quarantine_rows
SELECT NULL, $source_table,
       CASE WHEN "time" IS NULL THEN 'null_time'
            WHEN {{ raw.utc_time(activity.raw, "time") }} IS NULL THEN 'unparseable_time'
            ELSE 'future_time' END,
       source_file, source_row, {{ raw.row_json(activity.raw) }}
FROM {{ raw.rows(activity.raw) }}
WHERE "time" IS NULL OR {{ raw.utc_time(activity.raw, "time") }} IS NULL
   OR {{ raw.utc_time(activity.raw, "time") }} > $future_limit
