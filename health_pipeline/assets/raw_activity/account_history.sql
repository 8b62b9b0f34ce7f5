-- Every version of an account's attributes, in force on the days [valid_from, valid_to): a NULL
-- valid_from means since the start, a NULL valid_to still current (history_recorded.sql).
-- Created outside the swap's transaction, as publish.transaction explains.
CREATE TABLE IF NOT EXISTS raw.account_history (
    account_id VARCHAR, name VARCHAR, owner VARCHAR, plan VARCHAR, arr DOUBLE, vertical VARCHAR,
    customer_since DATE, status VARCHAR, churned_at DATE, valid_from DATE, valid_to DATE,
    crm_account_id VARCHAR
);
-- A history recorded before accounts could carry their CRM's id gains the column.
ALTER TABLE raw.account_history ADD COLUMN IF NOT EXISTS crm_account_id VARCHAR;

-- And seats_purchased, from when accounts could carry it: license utilisation's denominator.
ALTER TABLE raw.account_history ADD COLUMN IF NOT EXISTS seats_purchased DOUBLE
