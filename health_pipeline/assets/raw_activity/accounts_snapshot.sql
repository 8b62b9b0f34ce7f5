-- The accounts that load: what raw.accounts is replaced with.
CREATE OR REPLACE TEMP TABLE accounts_snapshot AS
SELECT account_id, name, owner, plan, arr, vertical, customer_since, status, churned_at, crm_account_id,
       renewal_date, seats_purchased
FROM accounts_read WHERE outcome = 'loaded'
