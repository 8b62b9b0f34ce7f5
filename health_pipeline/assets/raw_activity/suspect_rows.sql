{% import "assets/raw_activity/_activity.sql" as activity_rows %}
-- The staged rows of an activity table that may be bad input: those without an id, a user or
-- (for events) a name, and those whose contact (activity_attribution) neither loads nor is
-- excluded. Every other row is loaded, excluded or a duplicate (activity_classified), so the
-- quarantine classifies only these, about 1 % of the rows, found by one anti join of all of
-- them with the user ids whose activity loads or is excluded (an anti join cannot repeat a row).
CREATE OR REPLACE TEMP VIEW {{ (activity.name ~ "_suspect") | quote }} AS
SELECT r.*
FROM {{ (activity.name ~ "_in_range") | quote }} r
WHERE NOT {{ activity_rows.is_valid(activity, "r.") }}
   OR r.user_id NOT IN (SELECT user_id FROM activity_attribution
                        WHERE outcome IN ('loaded', 'excluded') AND user_id IS NOT NULL)
