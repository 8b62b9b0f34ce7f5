{% import "assets/_shared.sql" as shared %}
-- The sync table: one row per scored account per snapshot date in [$first_day, $last_day],
-- with the account's attributes in force that day (and the days from it to the renewal_date then
-- in force: negative once that date has passed), every column of core.account_health, every
-- account metric and its context, computed_at and scorecard_version, in the documented order
-- (contract.sync_table_columns).
WITH snapshot_dates AS (
    {{ shared.snapshot_dates() }}
),
accounts_on_day AS (
    {{ shared.accounts_on_snapshot_dates() }}
)
SELECT a.account_id, a.crm_account_id, a.name AS account_name, a.owner, a.plan, a.status, a.arr, a.vertical,
       a.customer_since, a.renewal_date, h.snapshot_date,
       CAST(a.renewal_date - h.snapshot_date AS INTEGER) AS days_to_renewal,
       h.* EXCLUDE (account_id, snapshot_date, scorecard_version),
       {% for metric in config.account_metrics %}m.{{ metric | quote }}, {% endfor %}
       {% for column in account_context %}m.{{ column | quote }}, {% endfor %}
       $computed_at::TIMESTAMP AS computed_at, h.scorecard_version
FROM core.account_health h
JOIN core.account_metrics m ON m.account_id = h.account_id AND m.snapshot_date = h.snapshot_date
JOIN accounts_on_day a ON a.account_id = h.account_id AND a.snapshot_date = h.snapshot_date
WHERE h.snapshot_date BETWEEN $first_day AND $last_day
