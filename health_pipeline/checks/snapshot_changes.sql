-- How many accounts the latest accepted snapshot and the new one (raw.accounts, raw.contacts)
-- hold, and the accounts that lost something since: gone from the accounts export, more than
-- $max_drop of their users gone, or a required attribute that was set and is now empty.
WITH last_accepted AS (
    SELECT * FROM raw.accepted_snapshots
    WHERE accepted_at = (SELECT max(accepted_at) FROM raw.accepted_snapshots)
),
current_snapshot AS (
    SELECT a.account_id, a.owner, a.plan, a.status, a.customer_since, count(c.user_id) AS users
    FROM raw.accounts a LEFT JOIN raw.contacts c USING (account_id)
    GROUP BY ALL
),
compared AS (
    SELECT l.account_id, l.users AS users_before, coalesce(c.users, 0) AS users_now,
           c.account_id IS NULL AS missing,
           list_filter([
               CASE WHEN l.owner IS NOT NULL AND c.owner IS NULL THEN 'owner' END,
               CASE WHEN l.plan IS NOT NULL AND c.plan IS NULL THEN 'plan' END,
               CASE WHEN l.status IS NOT NULL AND c.status IS NULL THEN 'status' END,
               CASE WHEN l.customer_since IS NOT NULL AND c.customer_since IS NULL THEN 'customer_since' END
           ], lambda x: x IS NOT NULL) AS attributes_lost
    FROM last_accepted l LEFT JOIN current_snapshot c USING (account_id)
)
SELECT (SELECT count(*) FROM last_accepted) AS accounts_before,
       (SELECT count(*) FROM current_snapshot) AS accounts_now,
       list({'account_id': account_id, 'users_before': users_before, 'users_now': users_now,
             'missing': missing, 'attributes_lost': attributes_lost} ORDER BY account_id)
           FILTER (WHERE missing OR users_now < users_before * (1 - $max_drop) OR len(attributes_lost) > 0)
           AS changes
FROM compared
