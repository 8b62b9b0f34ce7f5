-- Ids in {{ table }} for [$first_day, $last_day] (and undated rows): how many, how many distinct,
-- and how many of them are stored again on a day outside the range (deduplication holds across
-- days). Grouped rather than counted DISTINCT, and probed from the rows outside the range, so
-- that a long backfill's hundred million ids spill to disk instead of running out of memory.
{% set id = id_column | quote %}
WITH copies_per_id AS (
    SELECT {{ id }}, count(*) AS copies
    FROM {{ table }}
    WHERE ({{ id }} IS NOT NULL) AND (activity_date BETWEEN $first_day AND $last_day OR activity_date IS NULL)
    GROUP BY {{ id }}
)
SELECT (SELECT coalesce(sum(copies), 0) FROM copies_per_id),
       (SELECT count(*) FROM copies_per_id),
       (SELECT count(*) FROM {{ table }} o
        WHERE o.activity_date NOT BETWEEN $first_day AND $last_day
          AND EXISTS (SELECT 1 FROM {{ table }} i
                      WHERE i.{{ id }} = o.{{ id }}
                        AND (i.activity_date BETWEEN $first_day AND $last_day OR i.activity_date IS NULL)))
