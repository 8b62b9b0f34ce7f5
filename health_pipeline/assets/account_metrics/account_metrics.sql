{% import "assets/_shared.sql" as shared %}
-- One row per account in force per snapshot date in [$first_day, $last_day] (raw.account_history):
-- its contacts' metrics rolled up. Accounts with no contacts or no activity have zero counts and null ratios.
WITH snapshot_dates AS (
    {{ shared.snapshot_dates() }}
),
accounts_on_day AS (
    {{ shared.accounts_on_snapshot_dates() }}
),
contacts_on_day AS (
    {{ shared.contacts_on_snapshot_dates() }}
),
contacts_with_role AS MATERIALIZED (
    -- Each contact's metrics with its role that day. Materialized, so that the contacts meet the
    -- accounts only through their metrics: DuckDB, which estimates the snapshot dates at one row,
    -- otherwise paired every contact with every account of the day first (a year at scale L
    -- filled 55 GB of disk with that join).
    SELECT m.*, {{ shared.is_power_contact("c.role") }} AS is_power_contact
    FROM core.contact_metrics m
    JOIN contacts_on_day c ON c.user_id = m.user_id AND c.snapshot_date = m.snapshot_date
    WHERE m.snapshot_date BETWEEN $first_day AND $last_day
),
account_contacts AS (
    -- Only contacts whose account_id is a known account that day roll up.
    SELECT m.*
    FROM contacts_with_role m
    JOIN accounts_on_day a ON a.account_id = m.account_id AND a.snapshot_date = m.snapshot_date
),
per_account AS (
    SELECT m.snapshot_date, m.account_id,
           count(*) AS contacts_total,
           count(*) FILTER (WHERE m.usage_28d > 0) AS active_users_28d,
           count(*) FILTER (WHERE m.usage_prev_28d > 0) AS active_users_prev_28d,
           CAST(sum(m.usage_28d) AS BIGINT) AS usage_28d,
           CAST(sum(m.usage_prev_28d) AS BIGINT) AS usage_prev_28d,
           CAST(sum(m.sessions_28d) AS BIGINT) AS sessions_28d,
           max(m.usage_28d) AS top_user_usage_28d,
           {% for e in config.feature_events %}
           (coalesce(sum(m.{{ event_metric_column(e) | quote }}), 0) > 0)::INTEGER{{ " +" if not loop.last }}
           {% endfor %}
               AS features_adopted_28d,
           count(*) FILTER (WHERE m.kpi_28d > 0) AS kpi_users_28d,
           max(m.last_usage_date) AS last_usage_date,
           CAST(sum(m.usage_90d) AS BIGINT) AS usage_90d,
           count(*) FILTER (WHERE m.is_power_contact) AS power_contacts_total,
           count(*) FILTER (WHERE m.is_power_contact AND m.usage_28d > 0) AS power_contacts_active_28d,
           max(m.last_usage_date) FILTER (WHERE m.is_power_contact) AS power_contact_last_usage_date,
           count(*) FILTER (WHERE m.first_session_date IS NOT NULL) AS contacts_with_session,
           count(*) FILTER (WHERE m.first_session_activated) AS contacts_activated_first_session,
           {% for e in config.tracked_events %}
           count(*) FILTER (WHERE m.{{ event_metric_column(e) | quote }} > 0) AS {{ event_users_metric(e) | quote }}{{ "," if not loop.last }}
           {% endfor %}
    FROM account_contacts m
    GROUP BY m.snapshot_date, m.account_id
),
every_account_day AS (
    -- Accounts with no contacts or no activity still get a row, with zero counts.
    SELECT a.snapshot_date, a.account_id,
           p.top_user_usage_28d, p.last_usage_date, p.power_contact_last_usage_date,
           {% for c in zero_filled %}
           coalesce(p.{{ c | quote }}, 0) AS {{ c | quote }}{{ "," if not loop.last }}
           {% endfor %}
    FROM accounts_on_day a
    LEFT JOIN per_account p ON p.snapshot_date = a.snapshot_date AND p.account_id = a.account_id
)
SELECT snapshot_date, account_id, contacts_total,
       active_users_28d, active_users_prev_28d,
       usage_28d, usage_prev_28d,
       (usage_28d - usage_prev_28d) / nullif(usage_prev_28d, 0) AS usage_change_pct,
       (active_users_28d - active_users_prev_28d) / nullif(active_users_prev_28d, 0)
           AS active_users_change_pct,
       sessions_28d,
       active_users_28d / nullif(contacts_total, 0) AS breadth_28d,
       top_user_usage_28d / nullif(usage_28d, 0) AS top_user_share_28d,
       features_adopted_28d,
       kpi_users_28d,
       CAST(snapshot_date - last_usage_date AS INTEGER) AS days_since_last_active,
       usage_90d = 0 AS is_inactive_90d,
       power_contacts_total,
       power_contacts_active_28d,
       CAST(snapshot_date - power_contact_last_usage_date AS INTEGER) AS days_since_power_contact_active,
       contacts_activated_first_session / nullif(contacts_with_session, 0) AS first_session_activated_share,
       {% for e in config.tracked_events %}
       {{ event_users_metric(e) | quote }}{{ "," if not loop.last }}
       {% endfor %}
FROM every_account_day
