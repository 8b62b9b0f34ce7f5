-- Append the bad-input rows of a classified table (`classified`, read from raw table
-- $source_table) to quarantine_rows. Rows of dimension tables belong to no day; activity rows
-- are filed under their UTC day, and keep their staged values (times in UTC) as JSON.
INSERT INTO quarantine_rows
SELECT {% if activity %}CAST("time" AS DATE){% else %}NULL{% endif %}, $source_table, outcome,
       source_file, source_row,
       {% if activity %}to_json(struct_pack({% for c in activity.columns %}{{ c | quote }} := CAST({{ c | quote }} AS VARCHAR){{ ", " if not loop.last }}{% endfor %})){% else %}row_json{% endif %}

FROM {{ classified | quote }}
WHERE outcome NOT IN ('loaded', 'duplicate', 'excluded')
