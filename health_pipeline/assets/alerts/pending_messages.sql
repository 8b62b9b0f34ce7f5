-- What is still to be sent to $sink: the pending alerts of every day, each with what export.alerts
-- says of it, in message order (owner, day, worst band first, then score).
SELECT a.*
FROM "export"."alert_deliveries" d
JOIN "export"."alerts" a USING ("account_id", "snapshot_date", "kind")
WHERE d."sink" = $sink AND d."status" = 'pending'
ORDER BY a."owner" NULLS LAST, a."snapshot_date", list_position($bands::VARCHAR[], a."health_band") DESC,
         a."health_score", a."account_id", list_position($kinds::VARCHAR[], a."kind")
