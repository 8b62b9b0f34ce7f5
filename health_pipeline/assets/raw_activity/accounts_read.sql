{% import "assets/raw_activity/_raw_columns.sql" as raw %}
-- Every row of the accounts export, classified: loaded, duplicate, or a quarantine reason.
CREATE OR REPLACE TEMP TABLE accounts_read AS
{% call raw.classified("account_id", "customer_since, name",
                       ["name", "owner", "plan", "arr", "vertical", "customer_since", "status"]) %}
    SELECT {{ raw.column(accounts, "account_id") }}, {{ raw.column(accounts, "name") }},
           {{ raw.column(accounts, "owner") }}, {{ raw.column(accounts, "plan") }},
           {{ raw.column(accounts, "arr", "DOUBLE") }}, {{ raw.column(accounts, "vertical") }},
           {{ raw.column(accounts, "customer_since", "DATE") }}, {{ raw.column(accounts, "status") }},
           source_file, source_row, {{ raw.row_json(accounts) }} AS row_json,
           CASE
               WHEN account_id IS NULL THEN 'null_id'
               WHEN {{ raw.unreadable(accounts, "arr") }} OR NOT isfinite({{ raw.value(accounts, "arr", "DOUBLE") }})
                   THEN 'unparseable_arr'
               WHEN {{ raw.value(accounts, "arr", "DOUBLE") }} < 0 THEN 'negative_arr'
               WHEN {{ raw.unreadable(accounts, "customer_since") }} THEN 'unparseable_customer_since'
           END AS problem
    FROM {{ raw.rows(accounts) }}
{% endcall %}
