-- Rows of {{ table }} in [$first_day, $last_day] whose time falls on another UTC day than the
-- one they are filed under, and the range of times.
SELECT count(*) FILTER (WHERE CAST("time" AS DATE) <> activity_date), min("time"), max("time")
FROM {{ table }}
WHERE activity_date BETWEEN $first_day AND $last_day
