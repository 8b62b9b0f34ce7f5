{% import "assets/_shared.sql" as shared %}
-- Each day in [$first_day, $last_day] with its numbers of raw events and sessions, zeros included.
WITH days AS (
    {{ shared.snapshot_dates() }}
),
events_per_day AS (
    SELECT activity_date AS snapshot_date, count(*) AS events
    FROM raw.events WHERE activity_date BETWEEN $first_day AND $last_day GROUP BY ALL
),
sessions_per_day AS (
    SELECT activity_date AS snapshot_date, count(*) AS sessions
    FROM raw.sessions WHERE activity_date BETWEEN $first_day AND $last_day GROUP BY ALL
)
SELECT d.snapshot_date, coalesce(e.events, 0), coalesce(s.sessions, 0)
FROM days d
LEFT JOIN events_per_day e USING (snapshot_date)
LEFT JOIN sessions_per_day s USING (snapshot_date)
ORDER BY d.snapshot_date
