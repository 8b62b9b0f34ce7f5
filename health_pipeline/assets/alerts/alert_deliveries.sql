-- The ledger: one row per alert and sink, recorded the first time the alert fires while that sink
-- is configured, and never rewritten but for its status: 'pending' until the message that carries
-- it is accepted ('sent', with sent_at), or 'past' for a day a backfill reached without
-- --send-past. So a rerun or a backfill never sends an alert twice.
CREATE TABLE IF NOT EXISTS "export"."alert_deliveries" (
    "account_id" VARCHAR, "snapshot_date" DATE, "kind" VARCHAR, "sink" VARCHAR, "owner" VARCHAR,
    "status" VARCHAR, "recorded_at" TIMESTAMP, "sent_at" TIMESTAMP, "last_error" VARCHAR
)
