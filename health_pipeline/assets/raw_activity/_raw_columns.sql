{#- Macros that read a raw table's columns (a raw_input.RawTable `t`). Every raw value is read
    with TRY_CAST, so a bad value becomes NULL plus a quarantine reason, never a failed run. -#}

{# Column `c` as the file holds it: its own column, or through a CRM mapping the CRM's column it
   is read from, or the mapping's constant. A value map translates the CRM's values, matched
   trimmed and whatever their case; a value it does not know is kept as written, so the column's
   own rule judges it as it would in our names (an unknown status loads, an unknown outcome is
   quarantined). #}
{% macro source(t, c) -%}
{% if t.is_constant(c) %}CAST($crm_{{ c }} AS VARCHAR)
{%- elif t.has_value_map(c) %}{% set written %}TRY_CAST({{ t.source(c) | quote }} AS VARCHAR){% endset -%}
coalesce(map($crm_{{ c }}_from::VARCHAR[], $crm_{{ c }}_to::VARCHAR[])[lower(trim({{ written }}))], {{ written }})
{%- else %}{{ t.source(c) | quote }}{% endif %}
{%- endmacro %}

{# The table's columns that the pipeline reads, under our names, plus source_file and source_row
   (1-based, within its file). Only those columns: a source column named like a helper cannot
   collide. Every other macro reads this macro's output, so a table read through a CRM mapping
   (raw_input.CrmTable) meets the same rules as one in our names. #}
{% macro rows(t) -%}
(SELECT {% for c in t.present_columns %}{{ source(t, c) }} AS {{ c | quote }}, {% endfor %}{{ source_file_column | quote }} AS source_file,
        {% if t.is_csv %}ordinality{% else %}file_row_number + 1{% endif %} AS source_row
 FROM {{ t.reader }}{% if t.is_csv %} WITH ORDINALITY{% endif %})
{%- endmacro %}

{# A column read as `cast`: NULL when unreadable, or when an optional column is absent. Ids are
   trimmed (an empty id is missing); enumerated values (status, plan, role) are trimmed and
   lower-cased, so 'Churned ' is churned. #}
{% macro value(t, name, cast="VARCHAR") -%}
{% if not t.has(name) %}CAST(NULL AS {{ cast }})
{%- elif t.is_id(name) %}nullif(trim(TRY_CAST({{ name | quote }} AS VARCHAR)), '')
{%- elif t.is_enum(name) %}lower(trim(TRY_CAST({{ name | quote }} AS VARCHAR)))
{%- else %}TRY_CAST({{ name | quote }} AS {{ cast }}){% endif %}
{%- endmacro %}

{# An id as the key rows are deduplicated and joined by: an integer id as it is (its text form,
   which raw.<table> stores, is one to one with it, and hashing integers is cheaper); any other
   id as its value. #}
{% macro key(t, name) -%}
{% if t.is_integer(name) %}{{ name | quote }}{% else %}{{ value(t, name) }}{% endif %} AS {{ name | quote }}
{%- endmacro %}

{% macro column(t, name, cast="VARCHAR") -%}
{{ value(t, name, cast) }} AS {{ name | quote }}
{%- endmacro %}

{# True when a column holds a value that cannot be read as its type. #}
{% macro unreadable(t, name) -%}
({{ name | quote }} IS NOT NULL AND {{ value(t, name, t.value_type(name)) }} IS NULL)
{%- endmacro %}

{# A time column as a UTC TIMESTAMP, NULL when unparseable. Naive values are already UTC; values
   with an offset are converted (the session runs in UTC). A TIMESTAMP column is used as is, so
   DuckDB can skip parquet row groups by time. #}
{% macro utc_time(t, name) -%}
{% if t.is_plain_timestamp(name) %}CAST({{ name | quote }} AS TIMESTAMP)
{%- else %}CAST(TRY_CAST({{ name | quote }} AS TIMESTAMPTZ) AS TIMESTAMP){% endif %}
{%- endmacro %}

{# A loose test that a time column lies in [$range_start, $range_end), made on the raw column so
   that DuckDB skips parquet row groups by their statistics, which it does not do for utc_time's
   cast through rows(). Rows it keeps still need the exact test. TRUE for a column with no usable
   statistics (text, or with a time zone). #}
{% macro may_be_in_range(t, name) -%}
{% if t.is_plain_timestamp(name) %}{{ name | quote }} BETWEEN CAST($range_start AS TIMESTAMP) - INTERVAL 1 SECOND
    AND CAST($range_end AS TIMESTAMP) + INTERVAL 1 SECOND
{%- else %}TRUE{% endif %}
{%- endmacro %}

{# The raw row's columns as a JSON object of their values as text, for the quarantine. #}
{% macro row_json(t) -%}
to_json(struct_pack({% for c in t.columns %}{{ c | quote }} := {{ value(t, c) }}{{ ", " if not loop.last }}{% endfor %}))
{%- endmacro %}

{# The rows of the caller's query (which computes `problem`) with their outcome: the problem if
   any; else the first copy of each `key` by `order` is loaded, a later identical copy is a
   duplicate, and a later copy whose `attributes` disagree is a conflicting_duplicate. #}
{% macro classified(key, order, attributes) -%}
{% set values %}struct_pack({% for a in attributes %}{{ a | quote }} := {{ a | quote }}{{ ", " if not loop.last }}{% endfor %}){% endset %}
SELECT *,
       CASE
           WHEN problem IS NOT NULL THEN problem
           WHEN row_number() OVER copies = 1 THEN 'loaded'
           WHEN {{ values }} IS NOT DISTINCT FROM first_value({{ values }}) OVER copies THEN 'duplicate'
           ELSE 'conflicting_duplicate'
       END AS outcome
FROM ({{ caller() }})
WINDOW copies AS (PARTITION BY {{ key | quote }}, problem IS NULL ORDER BY {{ order }}, source_file, source_row)
{%- endmacro %}

{# The quarantine reason of a row whose account is `account_id` (not null), NULL when it is
   known: an account of the accounts export, or of its history (a churned account may have left
   the export); quarantined_account when its row of the export did not load; else unknown_account. #}
{% macro account_problem(account_id) -%}
CASE WHEN {{ account_id }} IN (SELECT account_id FROM accounts_snapshot UNION SELECT account_id FROM raw.account_history)
         THEN NULL
     WHEN {{ account_id }} IN (SELECT account_id FROM accounts_read) THEN 'quarantined_account'
     ELSE 'unknown_account'
END
{%- endmacro %}

{# A time column as a UTC TIMESTAMP, NULL when unreadable or absent (the session runs in UTC, so
   a value with an offset is converted and a naive one is taken as UTC). #}
{% macro timestamp(t, name) -%}
CAST({{ value(t, name, "TIMESTAMPTZ") }} AS TIMESTAMP)
{%- endmacro %}
