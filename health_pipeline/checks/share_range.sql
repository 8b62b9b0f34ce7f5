-- Account-days in [$first_day, $last_day] whose {{ metric }} is outside [0, 1], and its range.
SELECT count(*) FILTER (WHERE NOT {{ metric | quote }} BETWEEN 0 AND 1),
       min({{ metric | quote }}), max({{ metric | quote }})
FROM core.account_metrics
WHERE snapshot_date BETWEEN $first_day AND $last_day
