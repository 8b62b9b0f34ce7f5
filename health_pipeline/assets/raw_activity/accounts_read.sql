{% import "assets/raw_activity/_raw_columns.sql" as raw %}
-- Every row of the accounts export, classified: loaded, duplicate, or a quarantine reason. A
-- value that cannot be read (an ARR of '$150000', a date of 'soon') does not drop the account:
-- it loads with that attribute NULL, and attribute_problem puts the row in the quarantine too.
CREATE OR REPLACE TEMP TABLE accounts_read AS
{% set arr = raw.value(accounts, "arr", "DOUBLE") %}
{% set seats = raw.value(accounts, "seats_purchased", "DOUBLE") %}
{% call raw.classified("account_id", "customer_since, name",
                       ["name", "owner", "plan", "arr", "vertical", "customer_since", "status", "churned_at",
                        "crm_account_id", "renewal_date", "seats_purchased", "id_as_written"]) %}
    SELECT {{ raw.column(accounts, "account_id") }}, {{ raw.column(accounts, "name") }},
           {{ raw.column(accounts, "owner") }}, {{ raw.column(accounts, "plan") }},
           CASE WHEN isfinite({{ arr }}) AND {{ arr }} >= 0 THEN {{ arr }} END AS arr,
           {{ raw.column(accounts, "vertical") }},
           {{ raw.column(accounts, "customer_since", "DATE") }}, {{ raw.column(accounts, "status") }},
           {{ raw.column(accounts, "churned_at", "DATE") }}, {{ raw.column(accounts, "crm_account_id") }},
           {{ raw.column(accounts, "renewal_date", "DATE") }},
           CASE WHEN isfinite({{ seats }}) AND {{ seats }} >= 0 THEN {{ seats }} END AS seats_purchased,
           -- 'A1 ' beside 'A1' is one id written two ways: a conflict, not two accounts.
           TRY_CAST("account_id" AS VARCHAR) AS id_as_written,
           source_file, source_row, {{ raw.row_json(accounts) }} AS row_json,
           CASE WHEN {{ raw.value(accounts, "account_id") }} IS NULL THEN 'null_id' END AS problem,
           CASE
               WHEN {{ raw.unreadable(accounts, "arr") }} OR NOT isfinite({{ arr }}) THEN 'unparseable_arr'
               WHEN {{ arr }} < 0 THEN 'negative_arr'
               WHEN {{ raw.unreadable(accounts, "customer_since") }} THEN 'unparseable_customer_since'
               WHEN {{ raw.unreadable(accounts, "churned_at") }} THEN 'unparseable_churned_at'
               WHEN {{ raw.unreadable(accounts, "renewal_date") }} THEN 'unparseable_renewal_date'
               WHEN {{ raw.unreadable(accounts, "seats_purchased") }} OR NOT isfinite({{ seats }})
                   THEN 'unparseable_seats_purchased'
               WHEN {{ seats }} < 0 THEN 'negative_seats_purchased'
           END AS attribute_problem
    FROM {{ raw.rows(accounts) }}
{% endcall %}
