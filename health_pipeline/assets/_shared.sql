{#- Macros more than one asset's SQL uses. -#}

{# One row per snapshot date in [$first_day, $last_day]. #}
{% macro snapshot_dates() -%}
SELECT CAST(d AS DATE) AS snapshot_date
FROM unnest(generate_series($first_day::TIMESTAMP, $last_day::TIMESTAMP, INTERVAL 1 DAY)) AS t(d)
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
