-- The outcomes that load: what raw.outcomes is replaced with.
CREATE OR REPLACE TEMP TABLE outcomes_snapshot AS
SELECT account_id, outcome_date, customer_outcome AS outcome, arr_before, arr_after, reason
FROM outcomes_read WHERE outcome = 'loaded'
