{% import "assets/raw_activity/_activity.sql" as activity_rows %}
-- The days outside the range, and their copies, that superseded_copies.sql would delete: where
-- the ledger is not changed in place (the Spark engine), those days are extracted again instead.
SELECT s.activity_date, count(*) AS copies
FROM raw.{{ activity.name | quote }} s
JOIN {{ (activity.name ~ "_loaded") | quote }} l ON {{ activity_rows.superseded(activity) }}
GROUP BY s.activity_date
ORDER BY s.activity_date
