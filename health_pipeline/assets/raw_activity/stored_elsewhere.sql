{% import "assets/raw_activity/_activity.sql" as activity_rows %}
-- The earliest stored copy of each staged id on a day outside [$range_start, $range_end): it
-- wins over the staged copies if it is earlier, so deduplication holds across runs and batches
-- (`stored`: raw.<table> exists). Ids compare as they are stored, or as text if raw.<table>
-- holds them in another type than the export has now (`same_id_type`).
{% set id = activity.id_column | quote %}
CREATE OR REPLACE TEMP TABLE {{ (activity.name ~ "_stored_elsewhere") | quote }} AS
{% if stored %}
SELECT CAST(s.{{ id }} AS VARCHAR) AS {{ id }}, min(s."time") AS stored_time
FROM raw.{{ activity.name | quote }} s
{% if same_id_type %}
SEMI JOIN ({{ activity_rows.valid_rows(activity) }}) v USING ({{ id }})
{% else %}
SEMI JOIN ({{ activity_rows.valid_rows(activity) }}) v ON CAST(s.{{ id }} AS VARCHAR) = CAST(v.{{ id }} AS VARCHAR)
{% endif %}
WHERE s.activity_date NOT BETWEEN CAST($range_start AS DATE) AND CAST($range_end AS DATE) - 1
GROUP BY s.{{ id }}
{% else %}
SELECT CAST(NULL AS VARCHAR) AS {{ id }}, CAST(NULL AS TIMESTAMP) AS stored_time WHERE false
{% endif %}
