-- Every column of the raw schema's tables, as (schema.table, column).
SELECT table_schema || '.' || table_name, column_name
FROM information_schema.columns
WHERE table_schema = 'raw'
