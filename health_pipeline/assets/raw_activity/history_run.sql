-- Record the days this accepted run processed (raw.history_runs).
INSERT INTO raw.history_runs VALUES ($recorded_at, $first_day, $last_day)
