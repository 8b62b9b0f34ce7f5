-- For each account scored on $report_date, its score and each component's points (as a whole
-- percentage of its possible points) over the 90-day window [$first_day, $report_date], as change
-- points: per series ('score' or a component) the days (counted from $first_day) on which the value
-- differs from the day before, and those values. The first day scored and $report_date are always
-- included, so a step line through the points is the whole series. A day the account was not
-- scored, or a component it was not scored on, is null. One row per account: its series as the JSON
-- its data file holds, {series: {"d": days, "v": values}}, so they never become Python objects.
WITH scored AS (
    -- Only the columns drawn: the sync table is wide, and this CTE is read twice.
    SELECT "account_id", "snapshot_date", "health_score"
           {%- for component in components %},
           {{ explanation_column(component, "points") | quote }}, {{ explanation_column(component, "points_possible") | quote }}
           {%- endfor %}
    FROM "export"."account_health"
    WHERE "snapshot_date" BETWEEN $first_day AND $report_date
      AND "account_id" IN (SELECT "account_id" FROM "export"."account_health" WHERE "snapshot_date" = $report_date)
),
first_scored AS (
    SELECT "account_id", min("snapshot_date") AS "since" FROM scored GROUP BY "account_id"
),
days_since_first_scored AS (
    SELECT "account_id",
           CAST(unnest(generate_series("since"::TIMESTAMP, $report_date::TIMESTAMP, INTERVAL 1 DAY)) AS DATE)
               AS "snapshot_date"
    FROM first_scored
),
daily_values AS (
    SELECT d."account_id", CAST(d."snapshot_date" - $first_day AS INTEGER) AS "day",
           CAST(s."health_score" AS DOUBLE) AS "score",
           {% for component in components %}
           CAST(round(100 * s.{{ explanation_column(component, "points") | quote }}
                      / nullif(s.{{ explanation_column(component, "points_possible") | quote }}, 0)) AS DOUBLE)
               AS {{ component | quote }}{{ "," if not loop.last }}
           {% endfor %}
    FROM days_since_first_scored d
    LEFT JOIN scored s USING ("account_id", "snapshot_date")
),
changes AS (
    -- Each series beside whether it changed that day: one window over the accounts' days, where
    -- one per series would sort every value again.
    SELECT "account_id", "day",
           "score", "score" IS DISTINCT FROM lag("score") OVER by_day OR "day" = CAST($report_date - $first_day AS INTEGER) AS "changed:score"
           {%- for component in components %},
           {{ component | quote }},
           {{ component | quote }} IS DISTINCT FROM lag({{ component | quote }}) OVER by_day OR "day" = CAST($report_date - $first_day AS INTEGER)
               AS {{ ("changed:" ~ component) | quote }}
           {%- endfor %}
    FROM daily_values
    WINDOW by_day AS (PARTITION BY "account_id" ORDER BY "day")
),
series_changes AS (
    SELECT *
    FROM changes
    UNPIVOT INCLUDE NULLS (("value", "is_change") FOR "series" IN (
        ("score", "changed:score") AS 'score'
        {%- for component in components %},
        ({{ component | quote }}, {{ ("changed:" ~ component) | quote }}) AS {{ component | quote }}
        {%- endfor %}))
),
series_points AS (
    SELECT "account_id", "series", list("day" ORDER BY "day") AS "d", list("value" ORDER BY "day") AS "v"
    FROM series_changes
    WHERE "is_change"
    GROUP BY "account_id", "series"
)
-- The series in order of their names, so the same rows give the same file (json_group_object would
-- take them in whatever order DuckDB's threads hand them over).
SELECT "account_id",
       to_json(map(list("series" ORDER BY "series"), list(json_object('d', "d", 'v', "v") ORDER BY "series")))
           AS "history"
FROM series_points
GROUP BY "account_id"
