{% import "assets/raw_activity/_raw_columns.sql" as raw %}
-- Every row of the optional invoices table, classified: loaded, duplicate, or a quarantine
-- reason; one invoice per invoice_id, the earliest due kept. An invoice without an account or a
-- due date is quarantined; an unreadable paid_at or amount, or a negative amount, loads as NULL
-- and is quarantined too.
CREATE OR REPLACE TEMP TABLE invoices_read AS
{% set amount = raw.value(invoices, "amount", "DOUBLE") %}
{% call raw.classified("invoice_id", "due_date", ["account_id", "due_date", "paid_at", "amount"]) %}
    SELECT {{ raw.column(invoices, "invoice_id") }}, {{ raw.column(invoices, "account_id") }},
           {{ raw.column(invoices, "due_date", "DATE") }}, {{ raw.column(invoices, "paid_at", "DATE") }},
           CASE WHEN isfinite({{ amount }}) AND {{ amount }} >= 0 THEN {{ amount }} END AS amount,
           source_file, source_row, {{ raw.row_json(invoices) }} AS row_json,
           CASE
               WHEN {{ raw.unreadable(invoices, "paid_at") }} THEN 'unparseable_paid_at'
               WHEN {{ raw.unreadable(invoices, "amount") }} OR NOT isfinite({{ amount }}) THEN 'unparseable_amount'
               WHEN {{ amount }} < 0 THEN 'negative_amount'
           END AS attribute_problem,
           CASE
               WHEN {{ raw.value(invoices, "invoice_id") }} IS NULL THEN 'null_id'
               WHEN {{ raw.value(invoices, "account_id") }} IS NULL THEN 'null_account_id'
               WHEN {{ raw.unreadable(invoices, "due_date") }} THEN 'unparseable_due_date'
               WHEN {{ raw.value(invoices, "due_date", "DATE") }} IS NULL THEN 'null_due_date'
               ELSE {{ raw.account_problem(raw.value(invoices, "account_id")) }}
           END AS problem
    FROM {{ raw.rows(invoices) }}
{% endcall %}
