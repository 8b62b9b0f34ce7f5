-- Append the rows of `classified` (read from raw table $source_table) that loaded with an
-- unreadable attribute (set to NULL) to quarantine_rows, so the value is fixed at the source;
-- the row itself is kept.
INSERT INTO quarantine_rows
SELECT NULL, $source_table, attribute_problem, source_file, source_row, row_json
FROM {{ classified | quote }}
WHERE outcome = 'loaded' AND attribute_problem IS NOT NULL
