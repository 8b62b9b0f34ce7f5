-- The staged rows of an activity table that may be bad input: those without an id, a user or
-- (for events) a name, and those whose contact (activity_attribution) did not load. Every other
-- row is loaded, excluded or a duplicate (activity_classified), so the quarantine classifies
-- only these, about 1 % of the rows, instead of all of them.
CREATE OR REPLACE TEMP VIEW {{ (activity.name ~ "_suspect") | quote }} AS
SELECT r.*
FROM {{ (activity.name ~ "_in_range") | quote }} r
LEFT JOIN activity_attribution u ON u.user_id = r.user_id
WHERE r.{{ activity.id_column | quote }} IS NULL
   OR r.user_id IS NULL
   {% if "event_table_name" in activity.read_columns %}
   OR r.event_table_name IS NULL
   {% endif %}
   OR coalesce(u.outcome, 'unknown_user') NOT IN ('loaded', 'excluded')
