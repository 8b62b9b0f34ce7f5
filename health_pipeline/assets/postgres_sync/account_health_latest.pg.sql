-- PostgreSQL. The view account_health_latest: each account's newest row of the sync table, whatever
-- its date, so an account no longer scored (churned) keeps its last row here; account_health_current
-- leaves it out. The query older versions of the pipeline created, so their view is kept as it is.
SELECT DISTINCT ON ("account_id") *
FROM {{ schema | quote }}."account_health"
ORDER BY "account_id", "snapshot_date" DESC
