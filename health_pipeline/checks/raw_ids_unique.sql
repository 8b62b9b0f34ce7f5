-- Ids in {{ table }} for [$first_day, $last_day] (and undated rows): how many, how many distinct,
-- and how many of them are stored again on a day outside the range (deduplication holds across days).
WITH in_range AS (
    SELECT {{ id_column | quote }} FROM {{ table }}
    WHERE activity_date BETWEEN $first_day AND $last_day OR activity_date IS NULL
)
SELECT count({{ id_column | quote }}), count(DISTINCT {{ id_column | quote }}),
       (SELECT count(*) FROM {{ table }} t SEMI JOIN in_range USING ({{ id_column | quote }})
        WHERE t.activity_date NOT BETWEEN $first_day AND $last_day)
FROM in_range
