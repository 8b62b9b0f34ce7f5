-- Days outside [$first_day, $last_day] whose raw activity another run changed (a copy it
-- superseded): this run recomputes their daily fact too.
SELECT DISTINCT activity_date
FROM raw.days_to_refresh
WHERE activity_date NOT BETWEEN $first_day AND $last_day
ORDER BY activity_date
