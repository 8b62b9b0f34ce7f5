{#- Macros more than one asset's SQL uses. -#}

{# One row per snapshot date in [$first_day, $last_day]. #}
{% macro snapshot_dates() -%}
SELECT CAST(generate_series AS DATE) AS snapshot_date
FROM generate_series($first_day::TIMESTAMP, $last_day::TIMESTAMP, INTERVAL 1 DAY)
{%- endmacro %}
