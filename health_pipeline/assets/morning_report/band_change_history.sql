-- Every band change up to $report_date of the accounts in the sync table that day, newest first:
-- the account pages' history and, for $report_date itself, the portfolio's and owner pages' moves.
SELECT "account_id", "snapshot_date", "from_band", "to_band", "direction", "band_source",
       "health_score", "score_delta_7d", "what_changed", "what_changed_7d", "top_drag", "score_reason"
FROM "export"."band_changes"
WHERE "snapshot_date" <= $report_date
  AND "account_id" IN (SELECT "account_id" FROM "export"."account_health" WHERE "snapshot_date" = $report_date)
ORDER BY "account_id", "snapshot_date" DESC
