-- The ledger: one row per alert and sink, recorded the first time the alert fires while that sink
-- is configured, and never rewritten once sent. Its status: 'pending' until the message that
-- carries it is accepted ('sent', with sent_at), or 'past' for a day a backfill reached without
-- --send-past; 'failed' once the sink has refused its message for a reason that will not change
-- (last_error) on the alerts block's max_attempts-th try. Each try counts in attempts, and
-- addresses the alert to the account's owner at the time (owner). So a rerun or a backfill never
-- sends an alert twice, and a message the sink refuses is not tried forever.
CREATE TABLE IF NOT EXISTS "export"."alert_deliveries" (
    "account_id" VARCHAR, "snapshot_date" DATE, "kind" VARCHAR, "sink" VARCHAR, "owner" VARCHAR,
    "status" VARCHAR, "recorded_at" TIMESTAMP, "sent_at" TIMESTAMP, "last_error" VARCHAR,
    "attempts" INTEGER DEFAULT 0
);
-- A ledger recorded before attempts were counted gains the column, its rows none tried yet.
ALTER TABLE "export"."alert_deliveries" ADD COLUMN IF NOT EXISTS "attempts" INTEGER DEFAULT 0
