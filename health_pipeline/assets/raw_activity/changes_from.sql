-- The first day a change in this run's snapshot applies to: the day after the last day any
-- accepted run processed, so no day already published is restated. $first_day on the first run.
SELECT coalesce(max(last_day) + 1, $first_day::DATE) FROM raw.history_runs
