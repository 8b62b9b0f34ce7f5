-- PostgreSQL. Whether the stored view already is what the pipeline wants: its definition as the
-- server prints it equals the temporary view's (false when there is no such view yet), and its
-- comment is the description. Most syncs find both true and leave the view, its grants and the
-- views built on it alone, without taking a lock on it.
WITH stored AS (
    SELECT pg_get_viewdef(oid) AS definition, obj_description(oid, 'pg_class') AS description
    FROM pg_class
    WHERE relkind = 'v' AND relname = %(view)s
      AND relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
), wanted AS (
    SELECT pg_get_viewdef(oid) AS definition
    FROM pg_class
    WHERE relname = %(wanted)s AND relnamespace = pg_my_temp_schema()
)
SELECT
    EXISTS (SELECT 1 FROM stored JOIN wanted USING (definition)) AS same_definition,
    EXISTS (SELECT 1 FROM stored WHERE description IS NOT DISTINCT FROM %(description)s) AS same_description
