-- PostgreSQL. The synced copy of one export table, created by the first sync: the export's
-- columns, keyed like the export, so a CS tool's connector can upsert or read by that key.
CREATE TABLE IF NOT EXISTS {{ schema | quote }}.{{ table | quote }} (
    {% for name, type in columns %}
    {{ name | quote }} {{ type }},
    {% endfor %}
    PRIMARY KEY ({% for name in key %}{{ name | quote }}{{ ", " if not loop.last }}{% endfor %})
)
