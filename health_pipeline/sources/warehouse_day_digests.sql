-- Every UTC day of a Heap activity table in the warehouse (rows without a time: a NULL day), with
-- what identifies its rows: how many there are, and the sum over them of a hash of the row (its
-- values as text, a NULL told apart from any text, md5-hashed, the first 7 hex digits read as a
-- number). A day whose rows change changes its digest, unless both the count and the sum stay the
-- same: about one chance in 268 million. Written in DuckDB's dialect and portable through sqlglot:
-- md5, strpos and substr exist in every warehouse, and the sum fits a BIGINT.
WITH hashed_rows AS (
    SELECT CAST({{ columns["time"] | quote }} AS DATE) AS "day",
           md5({% for spelled in columns.values() %}coalesce('=' || CAST({{ spelled | quote }} AS VARCHAR), '-'){{ " || '|' || " if not loop.last }}{% endfor %}) AS "row_hash"
    FROM {{ schema | quote }}.{{ table | quote }}
)
SELECT "day",
       count(*) AS "row_count",
       CAST(sum({% for digit in range(7) %}(strpos('0123456789abcdef', substr("row_hash", {{ digit + 1 }}, 1)) - 1) * {{ 16 ** (6 - digit) }}{{ " + " if not loop.last }}{% endfor %}) AS BIGINT) AS "hash_sum"
FROM hashed_rows
GROUP BY "day"
