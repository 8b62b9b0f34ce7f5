-- The contacts that load, excluded ones included (with their reason): what raw.contacts is replaced with.
CREATE OR REPLACE TEMP TABLE contacts_snapshot AS
SELECT user_id, identity, joindate, account_id, role, excluded_reason
FROM contacts_checked WHERE outcome IN ('loaded', 'excluded')
