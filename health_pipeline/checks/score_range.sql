-- Scores in [$first_day, $last_day]: how many, how many null or outside 0..100, and their range.
SELECT count(*), count(*) FILTER (WHERE health_score IS NULL),
       count(*) FILTER (WHERE NOT health_score BETWEEN 0 AND 100), min(health_score), max(health_score)
FROM core.account_health
WHERE snapshot_date BETWEEN $first_day AND $last_day
