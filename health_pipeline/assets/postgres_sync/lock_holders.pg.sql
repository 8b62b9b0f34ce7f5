-- PostgreSQL. The other sessions that hold a lock on a table or view the sync waited for past its
-- lock_timeout: who they are and since when, oldest transaction first, so the failure can say whose
-- transaction to end. (A role that may not see another role's sessions reads NULL state and times.)
WITH holders AS (
    SELECT DISTINCT held.pid
    FROM pg_locks AS held
    JOIN pg_class AS locked ON locked.oid = held.relation
    WHERE held.granted AND held.pid <> pg_backend_pid()
      AND locked.relname = %(relation)s
      AND locked.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
)
SELECT activity.pid, activity.usename, activity.application_name, activity.state,
       coalesce(activity.xact_start, activity.state_change) AS since
FROM holders
JOIN pg_stat_activity AS activity ON activity.pid = holders.pid
ORDER BY since NULLS LAST, activity.pid
