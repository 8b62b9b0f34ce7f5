-- What is still to be sent to $sink: the pending alerts of every day, each with what export.alerts
-- says of it, but addressed to the account's current owner (raw.accounts, the latest accounts
-- export), so an owner corrected since the alert fired gets what was not sent yet; an account
-- gone from the export keeps the owner it had. In message order: owner, day, worst band first,
-- then score.
WITH pending AS (
    SELECT a.* REPLACE (CASE WHEN c."account_id" IS NULL THEN a."owner" ELSE c."owner" END AS "owner")
    FROM "export"."alert_deliveries" d
    JOIN "export"."alerts" a USING ("account_id", "snapshot_date", "kind")
    LEFT JOIN "raw"."accounts" c ON c."account_id" = a."account_id"
    WHERE d."sink" = $sink AND d."status" = 'pending'
)
SELECT *
FROM pending
ORDER BY "owner" NULLS LAST, "snapshot_date", list_position($bands::VARCHAR[], "health_band") DESC,
         "health_score", "account_id", list_position($kinds::VARCHAR[], "kind")
