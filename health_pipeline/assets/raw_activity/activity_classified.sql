{% import "assets/raw_activity/_activity.sql" as activity_rows %}
-- Staged rows of an activity table (`rows`: all of them, <table>_in_range, or only those that
-- may be bad input, <table>_suspect) with their outcome, as the view `view`: loaded, duplicate,
-- excluded (an excluded identity's activity) or a quarantine reason, and the contact they count
-- for (activity_attribution). Re-synced exports repeat rows: one copy per id is kept, the
-- earliest, across all days (<table>_kept_copies among all the staged rows,
-- <table>_stored_elsewhere on other days, ids as text, joined only if `any_stored`), so a row's
-- outcome is the same whichever of these views it is read from. A view: each of its readers
-- (for events, mainly the ledger and the counts) scans the staged rows once, which costs less
-- than writing every row's classification to a table first.
{% set id = activity.id_column | quote %}
CREATE OR REPLACE TEMP VIEW {{ view | quote }} AS
WITH checked AS (
    SELECT r.*,
           CASE
               WHEN r.{{ id }} IS NULL THEN 'null_id'
               WHEN r.user_id IS NULL THEN 'null_user_id'
               {% if "event_table_name" in activity.read_columns %}
               WHEN r.event_table_name IS NULL THEN 'null_event_name'
               {% endif %}
               WHEN k.kept_copy <> {{ activity_rows.copy_order("r.") }} THEN 'duplicate'
               {% if any_stored %}
               WHEN e.stored_time < r."time" THEN 'duplicate'
               {% endif %}
           END AS problem,
           coalesce(u.contact_id, r.user_id) AS contact_id,
           coalesce(u.outcome, 'unknown_user') AS user_outcome
    FROM {{ rows | quote }} r
    LEFT JOIN {{ (activity.name ~ "_kept_copies") | quote }} k USING ({{ id }})
    {% if any_stored %}
    LEFT JOIN {{ (activity.name ~ "_stored_elsewhere") | quote }} e ON e.{{ id }} = CAST(r.{{ id }} AS VARCHAR)
    {% endif %}
    LEFT JOIN activity_attribution u ON u.user_id = r.user_id
)
SELECT * EXCLUDE (user_outcome), coalesce(problem, user_outcome) AS outcome
FROM checked
