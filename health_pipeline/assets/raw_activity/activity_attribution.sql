-- Every user id the dimension exports know (one row each), with the contact its activity counts
-- for and what happens to that activity: loaded, excluded (an excluded identity),
-- quarantined_user (the contact is a user of the export that did not load) or unknown_user (a
-- merge into an id no export has). A merged-away id counts for the contact it was merged into;
-- an id not listed here is an unknown_user, counted for itself. One lookup for
-- activity_classified, instead of a join with each of the tables it summarises.
CREATE OR REPLACE TEMP TABLE activity_attribution AS
WITH users_not_loaded AS (
    SELECT DISTINCT user_id FROM users_read ANTI JOIN contacts_snapshot USING (user_id)
),
known_ids AS (
    SELECT user_id FROM identity_map
    UNION SELECT user_id FROM contacts_snapshot
    UNION SELECT user_id FROM users_not_loaded
),
attributed AS (
    SELECT k.user_id, coalesce(m.contact_id, k.user_id) AS contact_id
    FROM known_ids k LEFT JOIN identity_map m USING (user_id)
)
SELECT a.user_id, a.contact_id,
       CASE
           WHEN c.excluded_reason IS NOT NULL THEN 'excluded'
           WHEN c.user_id IS NOT NULL THEN 'loaded'
           WHEN q.user_id IS NOT NULL THEN 'quarantined_user'
           ELSE 'unknown_user'
       END AS outcome
FROM attributed a
LEFT JOIN contacts_snapshot c ON c.user_id = a.contact_id
LEFT JOIN users_not_loaded q ON q.user_id = a.contact_id
