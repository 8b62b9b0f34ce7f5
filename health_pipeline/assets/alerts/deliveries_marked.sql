-- One message's outcome at $sink, for its alerts ($keys), addressed to $owner: sent ($error is
-- NULL), or one more failed try, which leaves them pending unless the sink refused the message
-- for good ($permanent) and this was their $max_attempts-th try. Each alert's new status.
UPDATE "export"."alert_deliveries"
SET "attempts" = "attempts" + 1,
    "owner" = $owner,
    "status" = CASE WHEN $error IS NULL THEN 'sent'
                    WHEN $permanent AND "attempts" + 1 >= $max_attempts THEN 'failed'
                    ELSE 'pending' END,
    "sent_at" = CASE WHEN $error IS NULL THEN $now::TIMESTAMP END,
    "last_error" = $error
WHERE "sink" = $sink AND list_contains($keys, {'a': "account_id", 'd': "snapshot_date", 'k': "kind"})
RETURNING "status"
