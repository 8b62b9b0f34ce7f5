-- After the commit: the queued days this run recomputed are done. Clearing them later than the
-- commit is safe: a crash in between only makes the next run recompute them again.
DELETE FROM raw.days_to_refresh
WHERE activity_date BETWEEN $first_day AND $last_day OR list_contains($extra_days::DATE[], activity_date)
