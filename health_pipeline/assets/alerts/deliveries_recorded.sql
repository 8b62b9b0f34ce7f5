-- Record the staged alerts that the ledger does not hold yet, once per configured sink ($sinks):
-- pending when the day is recent enough ($send_from) or --send-past was given, else past.
INSERT INTO "export"."alert_deliveries" (
    "account_id", "snapshot_date", "kind", "sink", "owner", "status", "recorded_at", "attempts")
SELECT a."account_id", a."snapshot_date", a."kind", s."sink", a."owner",
       CASE WHEN a."snapshot_date" >= $send_from THEN 'pending' ELSE 'past' END,
       $recorded_at::TIMESTAMP, 0
FROM "staged_export_alerts" a
CROSS JOIN unnest($sinks::VARCHAR[]) AS s("sink")
WHERE NOT EXISTS (
    SELECT 1 FROM "export"."alert_deliveries" d
    WHERE d."account_id" = a."account_id" AND d."snapshot_date" = a."snapshot_date"
      AND d."kind" = a."kind" AND d."sink" = s."sink"
)
