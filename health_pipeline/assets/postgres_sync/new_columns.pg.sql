-- PostgreSQL. The columns the export gained (a new component or event, say), added to the synced
-- table in one statement: its ACCESS EXCLUSIVE lock waits for every reader's open transaction and
-- holds back new readers, so it runs only when there is a column to add. The rows synced before
-- keep their values and read NULL in them.
ALTER TABLE {{ schema | quote }}.{{ table | quote }}
{% for name, type in columns %}
    ADD COLUMN IF NOT EXISTS {{ name | quote }} {{ type }}{{ "," if not loop.last }}
{% endfor %}
