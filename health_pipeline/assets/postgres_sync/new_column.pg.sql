-- PostgreSQL. A column the export gained (a new component or event, say): added to the synced
-- table; the rows synced before it keep their values and read NULL in it.
ALTER TABLE {{ schema | quote }}.{{ table | quote }} ADD COLUMN IF NOT EXISTS {{ column | quote }} {{ column_type }}
