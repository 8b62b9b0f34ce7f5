-- PostgreSQL. The range's rows on their way in: a temporary table shaped like the synced one,
-- filled by COPY, dropped at the commit.
CREATE TEMPORARY TABLE {{ staging | quote }} (LIKE {{ schema | quote }}.{{ table | quote }}) ON COMMIT DROP
