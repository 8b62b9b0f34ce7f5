{% import "assets/_shared.sql" as shared %}
-- The alerts of the snapshot dates in [$first_day, $last_day]: one row per account, day and kind,
-- with what the owner needs to act on it. A kind fires on the day its condition starts, not on
-- every day it holds:
--   band_down            the band moved down from the day before, where a band counts only once the
--                        account has been in it for $min_days_in_band days in a row (hysteresis: a
--                        band that flaps at its cut-off does not alert every day; 1 day: every move);
--   score_drop           the 7-day score change fell to -$score_drop_points or below, from above;
--   onboarding_red       an onboarding account's activation turned red;
--   power_contact_quiet  a power contact's last activity is exactly $quiet_days days ago.
-- what_changed says what moved the account since the day before or, where nothing did, over the
-- 7 days before (shared.what_changed).
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
band_runs AS (
    -- Whether the day ends $min_days_in_band consecutive days in one band. Read from 90 days
    -- before the range, so a run that started before it counts.
    SELECT "account_id", "snapshot_date", "health_band",
           count(*) OVER recent = $min_days_in_band
           AND min("snapshot_date") OVER recent = "snapshot_date" - ($min_days_in_band - 1)
           AND min("health_band") OVER recent = max("health_band") OVER recent AS "band_is_settled"
    FROM "export"."account_health"
    WHERE "snapshot_date" BETWEEN $first_day - INTERVAL 90 DAY AND $last_day
    WINDOW recent AS (PARTITION BY "account_id" ORDER BY "snapshot_date"
                      ROWS BETWEEN $min_days_in_band - 1 PRECEDING AND CURRENT ROW)
),
settled_bands AS (
    -- The band that counts on each day: the band of the latest settled day up to it.
    SELECT "account_id", "snapshot_date",
           last_value(CASE WHEN "band_is_settled" THEN "health_band" END IGNORE NULLS) OVER by_day AS "band"
    FROM band_runs
    WINDOW by_day AS (PARTITION BY "account_id" ORDER BY "snapshot_date" ROWS UNBOUNDED PRECEDING)
),
settled_moves AS (
    SELECT *, lag("band") OVER by_day AS "band_the_day_before", lag("snapshot_date") OVER by_day AS "day_before"
    FROM settled_bands
    WINDOW by_day AS (PARTITION BY "account_id" ORDER BY "snapshot_date")
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
changes AS (
    SELECT h."account_id", h."snapshot_date",
           {{ shared.what_changed("h", "yesterday", config) }} AS "since_yesterday",
           {{ shared.what_changed("h", "week_ago", config) }} AS "over_7_days"
    FROM "export"."account_health" h
    {{ shared.yesterday_and_week_ago("h", "export") }}
    WHERE h."snapshot_date" BETWEEN $first_day AND $last_day
),
fired AS (
    SELECT "account_id", "snapshot_date", 'band_down' AS "kind",
           replace("band_the_day_before", '_', ' ') || ' → ' || replace("band", '_', ' ') AS "detail"
    FROM settled_moves
    WHERE "snapshot_date" BETWEEN $first_day AND $last_day AND "day_before" = "snapshot_date" - 1
      AND list_position($bands::VARCHAR[], "band") > list_position($bands::VARCHAR[], "band_the_day_before")
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
SELECT f."account_id", f."snapshot_date", f."kind", h."owner", h."account_name", h."crm_account_id",
       h."health_score", h."health_band", h."score_delta_7d", h."top_drag", h."score_reason", f."detail",
       CASE WHEN c."since_yesterday" <> '' THEN 'since yesterday: ' || c."since_yesterday"
            WHEN c."over_7_days" <> '' THEN 'over 7 days: ' || c."over_7_days" END AS "what_changed"
FROM fired f
JOIN "export"."account_health" h USING ("account_id", "snapshot_date")
JOIN changes c USING ("account_id", "snapshot_date")
