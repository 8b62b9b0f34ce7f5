{% import "assets/_shared.sql" as shared %}
-- Each day in [$first_day, $last_day] with its number of raw events, zero included.
WITH days AS (
    {{ shared.snapshot_dates() }}
),
events_per_day AS (
    SELECT activity_date AS snapshot_date, count(*) AS events
    FROM raw.events WHERE activity_date BETWEEN $first_day AND $last_day GROUP BY ALL
)
SELECT d.snapshot_date, coalesce(e.events, 0)
FROM days d LEFT JOIN events_per_day e USING (snapshot_date)
ORDER BY d.snapshot_date
