-- The UTC days whose landed activity differs between the files $before and $after: a row added
-- that was not there, or a row that is gone (a full resync dropped it). Rows without a usable time
-- belong to no day (raw_activity quarantines them in every run).
{% macro landed(files) -%}
SELECT * FROM read_parquet({{ files }}, union_by_name = true, hive_partitioning = false)
{%- endmacro %}
WITH changed_rows AS (
    {% if any_before and any_after %}
    ({{ landed("$after") }} EXCEPT {{ landed("$before") }})
    UNION ALL
    ({{ landed("$before") }} EXCEPT {{ landed("$after") }})
    {% elif any_after %}
    {{ landed("$after") }}
    {% else %}
    {{ landed("$before") }}
    {% endif %}
)
SELECT DISTINCT CAST(TRY_CAST("time" AS TIMESTAMPTZ) AS DATE) AS "day"
FROM changed_rows
WHERE "day" IS NOT NULL
ORDER BY "day"
