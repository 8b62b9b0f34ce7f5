-- For each account scored on $report_date, its last 90 days [$first_day, $report_date] as lists in
-- date order: the day (days after $first_day), the score and each component's points as a
-- percentage of its possible points (null where the component was not scored). Days the account
-- was not scored are absent.
SELECT "account_id",
       list(CAST("snapshot_date" - $first_day AS INTEGER) ORDER BY "snapshot_date") AS "day",
       list("health_score" ORDER BY "snapshot_date") AS "score",
       {% for component in components %}
       list(round(100 * {{ explanation_column(component, "points") | quote }}
                  / nullif({{ explanation_column(component, "points_possible") | quote }}, 0), 1)
            ORDER BY "snapshot_date") AS {{ component | quote }}{{ "," if not loop.last }}
       {% endfor %}
FROM "export"."account_health"
WHERE "snapshot_date" BETWEEN $first_day AND $report_date
  AND "account_id" IN (SELECT "account_id" FROM "export"."account_health" WHERE "snapshot_date" = $report_date)
GROUP BY "account_id"
