{% import "assets/_shared.sql" as shared %}
-- One row per counted contact per snapshot date in [$first_day, $last_day]: the per-contact
-- metrics a CS tool shows next to the account, with the account's CRM id that day.
WITH snapshot_dates AS (
    {{ shared.snapshot_dates() }}
),
accounts_on_day AS (
    {{ shared.accounts_on_snapshot_dates() }}
)
SELECT m.user_id, m.snapshot_date, m.account_id, a.crm_account_id, m.identity,
       m.sessions_28d, m.sessions_90d, m.active_days_28d,
       {% for e in config.tracked_events %}m.{{ event_metric_column(e) | quote }}, {% endfor %}
       m.usage_28d, m.usage_prev_28d, m.usage_90d, m.kpi_28d, m.last_seen_at,
       $computed_at::TIMESTAMP AS computed_at
FROM core.contact_metrics m
LEFT JOIN accounts_on_day a ON a.account_id = m.account_id AND a.snapshot_date = m.snapshot_date
WHERE m.snapshot_date BETWEEN $first_day AND $last_day
