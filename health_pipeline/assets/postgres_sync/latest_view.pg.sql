-- PostgreSQL. Each account's newest row of the sync table, the one most connectors want. Recreated
-- with the table, so it carries any column the table gained.
DROP VIEW IF EXISTS {{ schema | quote }}."account_health_latest";
CREATE VIEW {{ schema | quote }}."account_health_latest" AS
SELECT DISTINCT ON ("account_id") *
FROM {{ schema | quote }}."account_health"
ORDER BY "account_id", "snapshot_date" DESC
