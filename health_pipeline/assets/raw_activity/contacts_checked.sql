-- One row per user id that is not merged away: the contact, why it is excluded (if it is), and
-- its outcome: loaded, excluded, or a quarantine reason.
CREATE OR REPLACE TEMP TABLE contacts_checked AS
WITH users AS (
    SELECT * FROM users_read WHERE outcome = 'loaded'
),
merged_groups AS (
    -- A contact's joindate is the earliest of its own and every user id merged into it.
    SELECT m.contact_id, min(u.joindate) AS joindate, any_value(u.account_id) AS any_account_id
    FROM identity_map m JOIN users u ON u.user_id = m.user_id
    GROUP BY m.contact_id
),
contacts AS (
    SELECT u.user_id, u.identity, least(g.joindate, u.joindate) AS joindate,  -- least skips NULLs
           coalesce(u.account_id, g.any_account_id) AS account_id, u.role,
           u.source_file, u.source_row, u.row_json
    FROM users u
    LEFT JOIN merged_groups g ON g.contact_id = u.user_id
    WHERE u.user_id NOT IN (SELECT user_id FROM identity_map WHERE user_id <> contact_id)
),
with_exclusions AS (
    SELECT *,
           CASE
               WHEN identity IS NULL OR trim(identity) = '' THEN 'no_identity'
               WHEN EXISTS (SELECT 1 FROM unnest($exclude_identities::VARCHAR[]) AS p(pattern)
                            WHERE identity ILIKE p.pattern)  -- 'QA@GARBAGE.IO' is excluded too
                   THEN 'identity_pattern'
           END AS excluded_reason
    FROM contacts
)
-- Excluded identities are left out on purpose, whatever their account: not bad input.
SELECT *,
       CASE
           WHEN excluded_reason IS NOT NULL THEN 'excluded'
           WHEN account_id IS NULL THEN 'null_account_id'
           WHEN account_id IN (SELECT account_id FROM accounts_snapshot) THEN 'loaded'
           WHEN account_id IN (SELECT account_id FROM accounts_read) THEN 'quarantined_account'
           ELSE 'unknown_account'
       END AS outcome
FROM with_exclusions
