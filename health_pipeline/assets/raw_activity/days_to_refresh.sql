-- The days whose raw activity a run changed outside its own range (a copy superseded by an
-- earlier one it loaded): daily_contact_activity recomputes them on its next run, then clears them.
CREATE TABLE IF NOT EXISTS raw.days_to_refresh (activity_date DATE)
