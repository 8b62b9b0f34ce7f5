-- PostgreSQL. The synced table's columns in their order; none when it does not exist yet. Read once
-- per table and sync, so that only a column the export gained costs an ALTER TABLE.
SELECT column_name
FROM information_schema.columns
WHERE table_schema = %(schema)s AND table_name = %(table)s
ORDER BY ordinal_position
