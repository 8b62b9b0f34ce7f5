-- PostgreSQL. Insert the staged rows, or update the synced row with the same key where any value
-- differs. Returns one row per row written, saying whether it was new.
INSERT INTO {{ schema | quote }}.{{ table | quote }} AS synced
SELECT * FROM {{ staging | quote }}
ON CONFLICT ({% for name in key %}{{ name | quote }}{{ ", " if not loop.last }}{% endfor %}) DO UPDATE SET
    {% for name in columns %}
    {{ name | quote }} = EXCLUDED.{{ name | quote }}{{ "," if not loop.last }}
    {% endfor %}
WHERE (synced.*) IS DISTINCT FROM (EXCLUDED.*)
RETURNING (xmax = 0) AS "inserted"
