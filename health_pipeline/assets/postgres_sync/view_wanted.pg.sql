-- PostgreSQL. A view as this version of the pipeline defines it, created as a temporary view so the
-- server can print its definition beside the stored one's (view_unchanged.pg.sql).
DROP VIEW IF EXISTS pg_temp.{{ wanted | quote }};
CREATE TEMPORARY VIEW {{ wanted | quote }} AS
{{ query }}
