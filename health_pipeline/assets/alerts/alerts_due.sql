{% import "assets/_shared.sql" as shared %}
-- The alerts of the snapshot dates in [$first_day, $last_day]: one row per account, day and kind,
-- with what the owner needs to act on it. A kind fires on the day its condition starts, not on
-- every day it holds:
--   band_down            the band moved down (export.band_changes, direction worse);
--   score_drop           the 7-day score change fell to -$score_drop_points or below, from above;
--   onboarding_red       an onboarding account's activation turned red;
--   power_contact_quiet  a power contact's last activity is exactly $quiet_days days ago.
WITH snapshot_dates AS (
    {{ shared.snapshot_dates() }}
),
scores AS (
    SELECT h.*,
           lag(h."score_delta_7d") OVER by_account AS "delta_7d_the_day_before",
           lag(h."activation_status") OVER by_account AS "activation_the_day_before",
           lag(h."snapshot_date") OVER by_account AS "day_before"
    FROM "export"."account_health" h
    WHERE h."snapshot_date" BETWEEN $first_day - INTERVAL 1 DAY AND $last_day
    WINDOW by_account AS (PARTITION BY h."account_id" ORDER BY h."snapshot_date")
),
contacts_on_day AS (
    {{ shared.contacts_on_snapshot_dates() }}
),
quiet_power_contacts AS (
    SELECT u."account_id", u."snapshot_date",
           string_agg(coalesce(u."identity", u."user_id"), ', ' ORDER BY u."identity", u."user_id") AS "contacts"
    FROM "export"."contact_usage" u
    JOIN contacts_on_day c ON c."user_id" = u."user_id" AND c."snapshot_date" = u."snapshot_date"
    WHERE u."snapshot_date" BETWEEN $first_day AND $last_day
      AND {{ shared.is_power_contact('c."role"') }}
      AND CAST(u."last_seen_at" AS DATE) = u."snapshot_date" - $quiet_days
    GROUP BY ALL
),
fired AS (
    SELECT "account_id", "snapshot_date", 'band_down' AS "kind",
           replace("from_band", '_', ' ') || ' → ' || replace("to_band", '_', ' ') AS "detail"
    FROM "export"."band_changes"
    WHERE "snapshot_date" BETWEEN $first_day AND $last_day AND "direction" = 'worse'
    UNION ALL
    SELECT "account_id", "snapshot_date", 'score_drop',
           'score fell ' || printf('%.1f', -"score_delta_7d") || ' points in 7 days'
    FROM scores
    WHERE "snapshot_date" >= $first_day AND "score_delta_7d" <= -$score_drop_points
      AND NOT ("day_before" = "snapshot_date" - 1 AND coalesce("delta_7d_the_day_before" <= -$score_drop_points, false))
    UNION ALL
    SELECT "account_id", "snapshot_date", 'onboarding_red', 'onboarding activation turned red'
    FROM scores
    WHERE "snapshot_date" >= $first_day AND "in_onboarding" AND "activation_status" = 'red'
      AND NOT ("day_before" = "snapshot_date" - 1 AND coalesce("activation_the_day_before" = 'red', false))
    UNION ALL
    SELECT "account_id", "snapshot_date", 'power_contact_quiet',
           'no activity for ' || CAST($quiet_days AS VARCHAR) || ' days from power contact(s) ' || "contacts"
    FROM quiet_power_contacts
)
SELECT f."account_id", f."snapshot_date", f."kind", h."owner", h."account_name", h."health_score",
       h."health_band", h."top_drag", h."score_reason", f."detail"
FROM fired f
JOIN "export"."account_health" h USING ("account_id", "snapshot_date")
