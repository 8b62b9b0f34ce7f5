-- The portfolio on $report_date broken down by vertical, plan, owner and segment: per value, its
-- accounts and ARR, the share of its paying accounts with any activity in the last 28 days, the
-- share of its accounts (and of its ARR) at risk by their health score, and its onboarding accounts
-- whose activation is red (counted apart: their band comes from activation, not the score).
WITH accounts_today AS (
    SELECT "vertical", "plan", "owner", "segment", "arr",
           "band_source" = 'score' AND "health_band" = 'at_risk' AS "is_at_risk_by_health",
           "in_onboarding" AND "activation_status" = 'red' AS "is_activation_red",
           "status" = 'paying' AS "is_paying",
           "active_users_28d" > 0 AS "is_active_28d"
    FROM "export"."account_health"
    WHERE "snapshot_date" = $report_date
),
grouped AS (
    SELECT CASE WHEN grouping("vertical") = 0 THEN 'vertical'
                WHEN grouping("plan") = 0 THEN 'plan'
                WHEN grouping("owner") = 0 THEN 'owner'
                ELSE 'segment' END AS "dimension",
           CASE WHEN grouping("vertical") = 0 THEN "vertical"
                WHEN grouping("plan") = 0 THEN "plan"
                WHEN grouping("owner") = 0 THEN "owner"
                ELSE "segment" END AS "value",
           count(*) AS "accounts",
           sum("arr") AS "arr",
           count(*) FILTER (WHERE "is_paying") AS "paying_accounts",
           count(*) FILTER (WHERE "is_paying" AND "is_active_28d") AS "paying_active_28d",
           count(*) FILTER (WHERE "is_at_risk_by_health") AS "at_risk",
           coalesce(sum("arr") FILTER (WHERE "is_at_risk_by_health"), 0) AS "arr_at_risk",
           count(*) FILTER (WHERE "is_activation_red") AS "activation_red"
    FROM accounts_today
    GROUP BY GROUPING SETS (("vertical"), ("plan"), ("owner"), ("segment"))
)
SELECT *,
       "paying_active_28d" / nullif("paying_accounts", 0) AS "paying_active_share",
       "at_risk" / "accounts" AS "at_risk_share"
FROM grouped
ORDER BY "dimension", "accounts" DESC, "value" NULLS LAST
