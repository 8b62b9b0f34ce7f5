-- How many accounts of the snapshot have status 'churned' but no churn date anywhere (no
-- churned_at, no churned outcome): they are never scored, as the history cannot say since when.
SELECT count(*) FROM accounts_snapshot a
WHERE a.status = 'churned' AND a.churned_at IS NULL
  AND a.account_id NOT IN (SELECT account_id FROM outcomes_snapshot WHERE outcome = 'churned')
