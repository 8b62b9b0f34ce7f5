-- The days each accepted run processed: a change a run sees applies from the day after the
-- latest of them (changes_from.sql), so no published day is restated.
CREATE TABLE IF NOT EXISTS raw.history_runs (recorded_at TIMESTAMP, first_day DATE, last_day DATE)
