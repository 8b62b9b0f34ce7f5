{% import "assets/raw_activity/_activity.sql" as activity_rows %}
-- The copy kept of each id with more than one valid copy among the staged rows: the earliest
-- (activity_rows.copy_order). About 1 % of ids repeat, so this table is small, and every staged row is
-- classified by one join with it instead of by ordering all rows.
{% set id = activity.id_column | quote %}
CREATE OR REPLACE TEMP TABLE {{ (activity.name ~ "_kept_copies") | quote }} AS
WITH valid AS NOT MATERIALIZED (
    {{ activity_rows.valid_rows(activity) }}
),
repeated_ids AS MATERIALIZED (
    SELECT {{ id }} FROM valid GROUP BY {{ id }} HAVING count(*) > 1
)
SELECT {{ id }}, min({{ activity_rows.copy_order() }}) AS kept_copy
FROM valid SEMI JOIN repeated_ids USING ({{ id }})
GROUP BY {{ id }}
