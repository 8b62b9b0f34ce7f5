-- Queue the days that lost a superseded copy, for daily_contact_activity to recompute.
INSERT INTO raw.days_to_refresh SELECT unnest($days::DATE[])
