-- PostgreSQL. The view account_health_current, the current customers: each account's row on the
-- newest snapshot date the sync table holds. An account not scored that day (churned, no longer a
-- customer) is absent; account_health_latest keeps its last row.
SELECT *
FROM {{ schema | quote }}."account_health"
WHERE "snapshot_date" = (SELECT max("snapshot_date") FROM {{ schema | quote }}."account_health")
