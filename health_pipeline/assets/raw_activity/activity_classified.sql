{% import "assets/raw_activity/_activity.sql" as activity_rows %}
-- Staged rows of an activity table (`rows`: all of them, <table>_in_range, or only those that
-- may be bad input, <table>_suspect) with their outcome, as the view `view`: loaded, duplicate,
-- excluded (an excluded identity's activity) or a quarantine reason. Re-synced exports repeat
-- rows: one copy per id is kept, the earliest, across all days (<table>_kept_copies among all
-- the staged rows, <table>_stored_elsewhere on other days, ids as text, joined only if
-- `any_stored`), so a row's outcome is the same whichever of these views it is read from. A
-- view: each of its readers (the ledger, the counts) scans the staged rows once, which costs
-- less than writing every row's classification to a table first.
{% set id = activity.id_column | quote %}
CREATE OR REPLACE TEMP VIEW {{ view | quote }} AS
WITH users_not_loaded AS (
    -- Users of the export that are no loaded contact: their activity is quarantined with them.
    SELECT DISTINCT user_id FROM users_read ANTI JOIN contacts_snapshot USING (user_id)
),
checked AS (
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
           -- Rows of a merged-away id count for the contact it was merged into.
           coalesce(m.contact_id, r.user_id) AS contact_id
    FROM {{ rows | quote }} r
    LEFT JOIN {{ (activity.name ~ "_kept_copies") | quote }} k USING ({{ id }})
    {% if any_stored %}
    LEFT JOIN {{ (activity.name ~ "_stored_elsewhere") | quote }} e ON e.{{ id }} = CAST(r.{{ id }} AS VARCHAR)
    {% endif %}
    LEFT JOIN identity_map m ON m.user_id = r.user_id
)
SELECT a.*,
       CASE
           WHEN a.problem IS NOT NULL THEN a.problem
           WHEN c.excluded_reason IS NOT NULL THEN 'excluded'
           WHEN c.user_id IS NOT NULL THEN 'loaded'
           WHEN q.user_id IS NOT NULL THEN 'quarantined_user'
           ELSE 'unknown_user'
       END AS outcome
FROM checked a
LEFT JOIN contacts_snapshot c ON c.user_id = a.contact_id
LEFT JOIN users_not_loaded q ON q.user_id = a.contact_id
