{#- What the statements over an activity table's staged rows (<table>_in_range) share. -#}

{# The order that decides which copy of an id is kept: the earliest by time, then by user, file
   and row. `row` prefixes the columns (an alias and a dot). #}
{% macro copy_order(row="") -%}
struct_pack(t := {{ row }}"time", u := {{ row }}user_id, f := {{ row }}source_file, r := {{ row }}source_row)
{%- endmacro %}

{# True when a staged row has an id, a user and (for events) a name: the rows that take part
   in deduplication. activity_classified names the reason of each row that has not. `row`
   prefixes the columns. #}
{% macro is_valid(activity, row="") -%}
({{ row }}{{ activity.id_column | quote }} IS NOT NULL AND {{ row }}user_id IS NOT NULL
{%- if "event_table_name" in activity.read_columns %} AND {{ row }}event_table_name IS NOT NULL{% endif %})
{%- endmacro %}

{% macro valid_rows(activity) -%}
SELECT * FROM {{ (activity.name ~ "_in_range") | quote }} WHERE {{ is_valid(activity) }}
{%- endmacro %}

{# A staged row's raw columns as a JSON object of their values as text (times in UTC), for the
   quarantine. `row` prefixes the columns. #}
{% macro staged_row_json(activity, row="") -%}
to_json(struct_pack({% for c in activity.columns %}{{ c | quote }} := CAST({{ row }}{{ c | quote }} AS VARCHAR){{ ", " if not loop.last }}{% endfor %}))
{%- endmacro %}

{# True when a stored copy (alias `stored`, of raw.<table>) on a day outside [$range_start,
   $range_end) is a later copy of a loaded row of the range (alias `loaded`, of <table>_loaded):
   the range's copy is the one to keep. #}
{% macro superseded(activity, stored="s", loaded="l") -%}
{{ stored }}.{{ activity.id_column | quote }} = {{ loaded }}.{{ activity.id_column | quote }}
  AND {{ stored }}.activity_date NOT BETWEEN CAST($range_start AS DATE) AND CAST($range_end AS DATE) - 1
  AND {{ stored }}."time" > {{ loaded }}."time"
{%- endmacro %}

{# The outcomes of a staged row that are not bad input: everything else is a quarantine reason. #}
{% macro is_quarantined(outcome) -%}
{{ outcome }} NOT IN ('loaded', 'duplicate', 'excluded')
{%- endmacro %}
