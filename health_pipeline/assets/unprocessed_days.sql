-- The days in [$first_day, $last_day] that no accepted run processed, as spans of consecutive days
-- (first_day, last_day). raw.history_runs records the days each accepted run of raw_activity
-- processed, so a day it holds was extracted, even a day without activity.
WITH days AS (
    SELECT CAST(d AS DATE) AS day
    FROM generate_series(CAST($first_day AS TIMESTAMP), CAST($last_day AS TIMESTAMP), INTERVAL 1 DAY) AS t(d)
),
unprocessed AS (
    SELECT day FROM days
    WHERE NOT EXISTS (SELECT 1 FROM raw.history_runs r WHERE days.day BETWEEN r.first_day AND r.last_day)
),
numbered AS (
    -- Consecutive days share the difference between their date and their rank.
    SELECT day, day - CAST(row_number() OVER (ORDER BY day) AS INTEGER) AS span
    FROM unprocessed
)
SELECT min(day) AS first_day, max(day) AS last_day
FROM numbered
GROUP BY span
ORDER BY first_day
