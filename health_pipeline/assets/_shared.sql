{#- Macros more than one asset's SQL uses. -#}

{# One row per snapshot date in [$first_day, $last_day]. #}
{% macro snapshot_dates() -%}
SELECT CAST(generate_series AS DATE) AS snapshot_date
FROM generate_series($first_day::TIMESTAMP, $last_day::TIMESTAMP, INTERVAL 1 DAY)
{%- endmacro %}

{# True when a version of raw.account_history or raw.contact_history (alias `version`) is the
   one in force on the date `day`. #}
{% macro in_force(version, day) -%}
(coalesce({{ version }}.valid_from <= {{ day }}, true) AND coalesce({{ day }} < {{ version }}.valid_to, true))
{%- endmacro %}

{# One row per account with a churn date: the earliest of its churned_at (as its latest version
   gives it) and its churned outcomes. #}
{% macro churn_dates() -%}
SELECT account_id, min(churn_date) AS churn_date
FROM (SELECT account_id, arg_max_null(churned_at, coalesce(valid_from, DATE '-infinity')) AS churn_date
      FROM raw.account_history GROUP BY account_id
      UNION ALL
      SELECT account_id, outcome_date FROM raw.outcomes WHERE outcome = 'churned')
WHERE churn_date IS NOT NULL
GROUP BY account_id
{%- endmacro %}

{# One row per account per snapshot date (the caller's snapshot_dates CTE): its attributes in
   force that day, and is_customer: whether it was a customer then, that is customer_since (if
   known) on or before the day and no churn date on or before it. An account with no churn date
   whose status that day was 'churned' is not a customer: nothing says since when it churned. #}
{% macro accounts_on_snapshot_dates() -%}
SELECT d.snapshot_date, a.* EXCLUDE (valid_from, valid_to),
       coalesce(a.customer_since <= d.snapshot_date, true)
       AND CASE WHEN c.churn_date IS NULL THEN a.status IS DISTINCT FROM 'churned'
                ELSE d.snapshot_date < c.churn_date END AS is_customer
FROM snapshot_dates d
JOIN raw.account_history a ON {{ in_force("a", "d.snapshot_date") }}
LEFT JOIN ({{ churn_dates() }}) c ON c.account_id = a.account_id
{%- endmacro %}

{# One row per contact per snapshot date (the caller's snapshot_dates CTE): its attributes in force that day. #}
{% macro contacts_on_snapshot_dates() -%}
SELECT d.snapshot_date, c.* EXCLUDE (valid_from, valid_to)
FROM snapshot_dates d
JOIN raw.contact_history c ON {{ in_force("c", "d.snapshot_date") }}
{%- endmacro %}

{# Whether a contact with this role is a power contact ($power_roles: the configuration's, lower-case). #}
{% macro is_power_contact(role) -%}
list_contains($power_roles::VARCHAR[], lower(trim({{ role }})))
{%- endmacro %}

{# The one ranking of "most at risk", for the UI, the CLI and the morning report: by band, worst
   first ($bands lists them best first; an onboarding account's band comes from activation), then
   by score, lowest first, then by ARR, largest first. #}
{% macro most_at_risk_first(band, score, arr, account_id) -%}
list_position($bands::VARCHAR[], {{ band }}) DESC, {{ score }}, {{ arr }} DESC NULLS LAST, {{ account_id }}
{%- endmacro %}

{# A number in a sentence: up to three decimals, or 'missing'. #}
{% macro number(expr) -%}
coalesce(format('{:.10g}', round({{ expr }}, 3)), 'missing')
{%- endmacro %}

{# The rows of `schema`.account_health for `h`'s account the day before (alias yesterday) and 7
   days before (alias week_ago), for what_changed; null where it was not scored then. #}
{% macro yesterday_and_week_ago(h, schema) -%}
LEFT JOIN {{ schema | quote }}."account_health" yesterday
       ON yesterday."account_id" = {{ h }}."account_id" AND yesterday."snapshot_date" = {{ h }}."snapshot_date" - 1
LEFT JOIN {{ schema | quote }}."account_health" week_ago
       ON week_ago."account_id" = {{ h }}."account_id" AND week_ago."snapshot_date" = {{ h }}."snapshot_date" - 7
{%- endmacro %}

{# What moved an account between two of its scored days, as one line: the end of its onboarding,
   each activation measure whose colour changed, then the components whose points changed most
   (largest change first, then in the scorecard's order), each with its points and its metric's
   value before and after; at most three, '; '-separated. Empty when none of these changed; null
   when `before` joined no row (the account was not scored that day). `now` and `before` alias two rows with account_health's columns; the
   caller binds change_params(config) (health_pipeline.assets). #}
{% macro what_changed(now, before, config) -%}
CASE WHEN {{ before }}."snapshot_date" IS NOT NULL THEN array_to_string(list_transform(list_slice(list_sort(list_filter([
    {'tier': 0, 'shift': 0.0, 'order': 0, 'text': CASE WHEN {{ before }}."band_source" = 'activation' AND {{ now }}."band_source" = 'score'
                                THEN 'onboarding over: banded by the health score' END},
    {% for m in config.onboarding.measures %}
    {% set colour = activation_column(m.name) | quote %}
    {'tier': 1, 'shift': 0.0, 'order': {{ loop.index0 }}, 'text': CASE WHEN {{ before }}.{{ colour }} <> {{ now }}.{{ colour }}
                                THEN format('{} {} → {}', $change_measure_{{ loop.index0 }}, {{ before }}.{{ colour }},
                                            {{ now }}.{{ colour }}) END},
    {% endfor %}
    {% for component in config.components %}
    {% set points, value = explanation_column(component, "points") | quote, explanation_column(component, "value") | quote %}
    {'tier': 2, 'shift': -abs(coalesce({{ now }}.{{ points }}, 0) - coalesce({{ before }}.{{ points }}, 0)),
     'order': {{ loop.index0 }}, 'text': CASE WHEN {{ now }}.{{ points }} IS DISTINCT FROM {{ before }}.{{ points }} THEN format(
                 '{} {} → {} of {} points ({} {} → {})', $change_component_{{ loop.index0 }},
                 {{ number(before ~ "." ~ points) }}, {{ number(now ~ "." ~ points) }},
                 {{ number(now ~ "." ~ explanation_column(component, "points_possible") | quote) }},
                 $change_metric_{{ loop.index0 }}, {{ number(before ~ "." ~ value) }}, {{ number(now ~ "." ~ value) }}) END}
    {{- "," if not loop.last }}
    {% endfor %}
], lambda change: change.text IS NOT NULL)), 1, 3), lambda change: change.text), '; ') END
{%- endmacro %}
