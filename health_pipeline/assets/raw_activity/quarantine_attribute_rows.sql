-- Append the accounts that loaded with an unreadable attribute (set to NULL) to quarantine_rows,
-- so the value is fixed at the source; the account itself is kept.
INSERT INTO quarantine_rows
SELECT NULL, 'accounts', attribute_problem, source_file, source_row, row_json
FROM accounts_read
WHERE outcome = 'loaded' AND attribute_problem IS NOT NULL
