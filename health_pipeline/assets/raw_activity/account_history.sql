-- Every version of an account's attributes, in force on the days [valid_from, valid_to): a NULL
-- valid_from means since the start, a NULL valid_to still current (history_recorded.sql).
-- Created outside the swap's transaction, as publish.transaction explains.
CREATE TABLE IF NOT EXISTS raw.account_history (
    account_id VARCHAR, name VARCHAR, owner VARCHAR, plan VARCHAR, arr DOUBLE, vertical VARCHAR,
    customer_since DATE, status VARCHAR, churned_at DATE, valid_from DATE, valid_to DATE,
    crm_account_id VARCHAR, renewal_date DATE, seats_purchased DOUBLE
);
-- A history recorded before accounts could carry their CRM's id, their contract's end or their seats purchased
-- (license utilisation's denominator) gains the column.
ALTER TABLE raw.account_history ADD COLUMN IF NOT EXISTS crm_account_id VARCHAR;
ALTER TABLE raw.account_history ADD COLUMN IF NOT EXISTS renewal_date DATE;
ALTER TABLE raw.account_history ADD COLUMN IF NOT EXISTS seats_purchased DOUBLE
