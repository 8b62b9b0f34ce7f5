{% import "assets/raw_activity/_activity.sql" as activity_rows %}
-- The staged rows of an activity table that may be bad input: those without an id, a user or
-- (for events) a name, and those whose contact (activity_attribution) neither loads nor is
-- excluded. Every other row is loaded, excluded or a duplicate (activity_classified), so the
-- quarantine classifies only these, about 1 % of the rows. The users whose activity counts are
-- joined, not tested with NOT IN inside the OR: Spark can check that only row by row against
-- every user (a nested-loop join), over 20 minutes for 10 days at scale M; a join to distinct users cannot repeat a row.
CREATE OR REPLACE TEMP VIEW {{ (activity.name ~ "_suspect") | quote }} AS
WITH users_loaded_or_excluded AS (
    SELECT DISTINCT user_id
    FROM activity_attribution
    WHERE outcome IN ('loaded', 'excluded') AND user_id IS NOT NULL
)
SELECT r.*
FROM {{ (activity.name ~ "_in_range") | quote }} r
LEFT JOIN users_loaded_or_excluded counted ON counted.user_id = r.user_id
WHERE NOT {{ activity_rows.is_valid(activity, "r.") }}
   OR counted.user_id IS NULL
