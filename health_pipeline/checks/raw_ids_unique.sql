-- Ids in {{ table }} for [$first_day, $last_day] (and undated rows), and how many are distinct.
SELECT count({{ id_column | quote }}), count(DISTINCT {{ id_column | quote }})
FROM {{ table }}
WHERE activity_date BETWEEN $first_day AND $last_day OR activity_date IS NULL
