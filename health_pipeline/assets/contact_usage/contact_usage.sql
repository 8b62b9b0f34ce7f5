-- One row per counted contact per snapshot date in [$first_day, $last_day]: the per-contact
-- metrics a CS tool shows next to the account.
SELECT user_id, snapshot_date, account_id, identity,
       sessions_28d, sessions_90d, active_days_28d,
       {% for e in config.tracked_events %}{{ event_metric_column(e) | quote }}, {% endfor %}
       usage_28d, usage_prev_28d, usage_90d, kpi_28d, last_seen_at,
       $computed_at::TIMESTAMP AS computed_at
FROM core.contact_metrics
WHERE snapshot_date BETWEEN $first_day AND $last_day
