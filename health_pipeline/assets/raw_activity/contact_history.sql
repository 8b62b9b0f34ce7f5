-- Every version of a contact's attributes (its account, role, exclusion), in force on the days
-- [valid_from, valid_to), as in raw.account_history.
CREATE TABLE IF NOT EXISTS raw.contact_history (
    user_id VARCHAR, identity VARCHAR, joindate DATE, account_id VARCHAR, role VARCHAR,
    excluded_reason VARCHAR, valid_from DATE, valid_to DATE
)
