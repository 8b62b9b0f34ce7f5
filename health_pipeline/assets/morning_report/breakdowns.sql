-- The portfolio on $report_date broken down by vertical, plan, owner and segment: per value, its
-- accounts and ARR, the share of its paying accounts with any activity in the last 28 days, and the
-- share of its accounts (and of its ARR) at risk.
WITH accounts_today AS (
    SELECT "vertical", "plan", "owner", "segment", "arr", "health_band",
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
           count(*) FILTER (WHERE "health_band" = 'at_risk') AS "at_risk",
           coalesce(sum("arr") FILTER (WHERE "health_band" = 'at_risk'), 0) AS "arr_at_risk"
    FROM accounts_today
    GROUP BY GROUPING SETS (("vertical"), ("plan"), ("owner"), ("segment"))
)
SELECT *,
       "paying_active_28d" / nullif("paying_accounts", 0) AS "paying_active_share",
       "at_risk" / "accounts" AS "at_risk_share"
FROM grouped
ORDER BY "dimension", "accounts" DESC, "value" NULLS LAST
