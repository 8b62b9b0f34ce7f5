-- Rows of {{ table }} in [$first_day, $last_day] (and rows with no date, which belong to no
-- partition, so every range looks at them), and how many lack an id, a user or a time.
SELECT count(*),
       count(*) FILTER (WHERE {{ id_column | quote }} IS NULL),
       count(*) FILTER (WHERE user_id IS NULL),
       count(*) FILTER (WHERE "time" IS NULL OR activity_date IS NULL)
FROM {{ table }}
WHERE activity_date BETWEEN $first_day AND $last_day OR activity_date IS NULL
