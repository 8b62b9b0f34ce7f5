{% import "assets/raw_activity/_activity.sql" as activity_rows %}
-- Append the bad-input rows of a classified table (`classified`, read from raw table
-- $source_table) to quarantine_rows (or `into`: a batch of events files its rows directly). Rows of dimension tables belong to no day; activity rows
-- are filed under their UTC day, and keep their staged values (times in UTC) as JSON.
INSERT INTO {{ into | default("quarantine_rows") }}
SELECT {% if activity %}CAST("time" AS DATE){% else %}NULL{% endif %}, $source_table, outcome,
       source_file, source_row,
       {% if activity %}{{ activity_rows.staged_row_json(activity) }}{% else %}row_json{% endif %}

FROM {{ classified | quote }}
WHERE {{ activity_rows.is_quarantined("outcome") }}
