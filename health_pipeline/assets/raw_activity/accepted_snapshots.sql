-- The dimension snapshots every accepted run saw: per account, its attributes and how many
-- users the users export gave it. The snapshot guard compares each new export with the latest.
CREATE TABLE IF NOT EXISTS raw.accepted_snapshots (
    accepted_at TIMESTAMP, account_id VARCHAR, owner VARCHAR, plan VARCHAR, status VARCHAR,
    customer_since DATE, users BIGINT
)
