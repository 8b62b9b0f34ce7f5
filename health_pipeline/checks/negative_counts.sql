-- Rows of {{ table }} in [$first_day, $last_day], then per count column the rows where it is negative.
SELECT count(*)
       {% for column in columns %}, count(*) FILTER (WHERE {{ column | quote }} < 0){% endfor %}

FROM {{ table }}
WHERE snapshot_date BETWEEN $first_day AND $last_day
