{% import "assets/raw_activity/_raw_columns.sql" as raw %}
-- Every row of the optional outcomes export (renewals, churns, downgrades, expansions from the
-- CRM), classified: loaded, duplicate, or a quarantine reason. The outcome itself is read as
-- customer_outcome, because `outcome` is the classification. One outcome is an account's
-- outcome of one kind on one date; an ARR that cannot be read loads as NULL and is quarantined too.
CREATE OR REPLACE TEMP TABLE outcomes_read AS
{% if outcomes is none %}
SELECT NULL::VARCHAR AS account_id, NULL::DATE AS outcome_date, NULL::VARCHAR AS customer_outcome,
       NULL::DOUBLE AS arr_before, NULL::DOUBLE AS arr_after, NULL::VARCHAR AS reason,
       NULL::VARCHAR AS source_file, NULL::BIGINT AS source_row, NULL::JSON AS row_json,
       NULL::VARCHAR AS attribute_problem, NULL::VARCHAR AS outcome
WHERE false
{% else %}
{% set arr_before = raw.value(outcomes, "arr_before", "DOUBLE") %}
{% set arr_after = raw.value(outcomes, "arr_after", "DOUBLE") %}
{% call raw.classified("outcome_key", "arr_before, arr_after, reason", ["arr_before", "arr_after", "reason"]) %}
    WITH outcome_rows AS (
        SELECT {{ raw.column(outcomes, "account_id") }}, {{ raw.column(outcomes, "outcome_date", "DATE") }},
               {{ raw.value(outcomes, "outcome") }} AS customer_outcome,
               CASE WHEN isfinite({{ arr_before }}) AND {{ arr_before }} >= 0 THEN {{ arr_before }} END AS arr_before,
               CASE WHEN isfinite({{ arr_after }}) AND {{ arr_after }} >= 0 THEN {{ arr_after }} END AS arr_after,
               {{ raw.column(outcomes, "reason") }},
               source_file, source_row, {{ raw.row_json(outcomes) }} AS row_json,
               {{ raw.unreadable(outcomes, "outcome_date") }} AS date_unreadable,
               CASE
                   WHEN {{ raw.unreadable(outcomes, "arr_before") }} OR NOT isfinite({{ arr_before }})
                        OR {{ raw.unreadable(outcomes, "arr_after") }} OR NOT isfinite({{ arr_after }})
                       THEN 'unparseable_arr'
                   WHEN {{ arr_before }} < 0 OR {{ arr_after }} < 0 THEN 'negative_arr'
               END AS attribute_problem
        FROM {{ raw.rows(outcomes) }}
    )
    SELECT * EXCLUDE (date_unreadable),
           struct_pack(account_id, outcome_date, customer_outcome) AS outcome_key,
           CASE
               WHEN account_id IS NULL THEN 'null_account_id'
               WHEN date_unreadable THEN 'unparseable_outcome_date'
               WHEN outcome_date IS NULL THEN 'null_outcome_date'
               WHEN customer_outcome IS NULL OR NOT list_contains($outcome_kinds::VARCHAR[], customer_outcome)
                   THEN 'unknown_outcome'
               ELSE {{ raw.account_problem("account_id") }}
           END AS problem
    FROM outcome_rows
{% endcall %}
{% endif %}
