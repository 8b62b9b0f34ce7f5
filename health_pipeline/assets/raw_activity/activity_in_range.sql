{% import "assets/raw_activity/_raw_columns.sql" as raw %}
-- The rows of a raw activity table (sessions or all_events) whose UTC time lies in
-- [$range_start, $range_end) and not past $future_limit, with their id, user and time.
CREATE OR REPLACE TEMP TABLE {{ (activity.name ~ "_in_range") | quote }} AS
SELECT {{ raw.key(activity.raw, activity.id_column) }},
       {% for c in activity.read_columns[1:] %}{{ raw.column(activity.raw, c) }}, {% endfor %}
       {{ raw.utc_time(activity.raw, "time") }} AS "time", source_file, source_row
FROM {{ raw.rows(activity.raw) }}
{% if shape_only | default(false) %}
WHERE false  -- only the columns and their types (asset.Extraction.stage_shapes)
{% else %}
WHERE {{ raw.may_be_in_range(activity.raw, "time") }}
  AND {{ raw.utc_time(activity.raw, "time") }} >= $range_start
  AND {{ raw.utc_time(activity.raw, "time") }} < $range_end
  AND {{ raw.utc_time(activity.raw, "time") }} <= $future_limit
{% endif %}
