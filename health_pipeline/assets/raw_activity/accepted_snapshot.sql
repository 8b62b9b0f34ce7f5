-- Record the snapshot this run accepted, at $accepted_at.
INSERT INTO raw.accepted_snapshots
SELECT $accepted_at, a.account_id, a.owner, a.plan, a.status, a.customer_since, count(c.user_id)
FROM raw.accounts a LEFT JOIN raw.contacts c USING (account_id)
GROUP BY ALL
