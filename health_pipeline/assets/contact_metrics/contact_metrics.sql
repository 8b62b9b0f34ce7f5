{% import "assets/_shared.sql" as shared %}
{% import "assets/contact_metrics/_recency.sql" as recency %}
-- One row per counted contact per snapshot date D in [$first_day, $last_day]: rolling windows
-- W28(D) = [D-27, D], P28(D) = [D-55, D-28], W90(D) = [D-89, D], by UTC date. Each day of the
-- fact joins the snapshot dates whose windows it falls in.
WITH snapshot_dates AS (
    {{ shared.snapshot_dates() }}
),
contact_days AS (
    -- Each counted contact with its account on the day. A user is a contact from their joindate
    -- on (an unknown joindate counts from the start).
    SELECT snapshot_date, user_id, account_id, identity, joindate
    FROM ({{ shared.contacts_on_snapshot_dates() }})
    WHERE excluded_reason IS NULL AND coalesce(joindate <= snapshot_date, true)
),
recent_activity AS (
    SELECT *, {{ recency.sum_of(config.usage_events) }} AS usage, {{ event_count_column(config.kpi_event) | quote }} AS kpi
    FROM core.daily_contact_activity
    WHERE activity_date BETWEEN $first_day::DATE - $lookback_days AND $last_day::DATE
),
older_history AS (
    -- Before every window: only the latest moments matter, for last_seen_at and recency.
    {{ recency.recency_before(config, "$first_day::DATE - $lookback_days") | indent(4) }}
),
windowed AS (
    SELECT d.snapshot_date, a.user_id,
           sum(a.sessions) FILTER (WHERE a.activity_date >= d.snapshot_date - 27) AS sessions_28d,
           sum(a.sessions) FILTER (WHERE a.activity_date >= d.snapshot_date - 89) AS sessions_90d,
           count(*) FILTER (WHERE a.activity_date >= d.snapshot_date - 27) AS active_days_28d,
           sum(a.usage) FILTER (WHERE a.activity_date >= d.snapshot_date - 27) AS usage_28d,
           sum(a.usage) FILTER (
               WHERE a.activity_date BETWEEN d.snapshot_date - 55 AND d.snapshot_date - 28
           ) AS usage_prev_28d,
           sum(a.usage) FILTER (WHERE a.activity_date >= d.snapshot_date - 89) AS usage_90d,
           sum(a.kpi) FILTER (WHERE a.activity_date >= d.snapshot_date - 27) AS kpi_28d,
           {% for e in config.tracked_events %}
           sum(a.{{ event_count_column(e) | quote }}) FILTER (WHERE a.activity_date >= d.snapshot_date - 27)
               AS {{ event_metric_column(e) | quote }},
           {% endfor %}
           max(a.last_seen_at) AS last_seen_at,
           max(a.activity_date) FILTER (WHERE a.usage > 0) AS last_usage_date,
           min(a.activity_date) FILTER (WHERE a.sessions > 0) AS first_session_date,
           arg_min(a.first_session_activated, a.activity_date) FILTER (WHERE a.sessions > 0)
               AS first_session_activated
    FROM snapshot_dates d
    JOIN recent_activity a ON a.activity_date <= d.snapshot_date
    GROUP BY d.snapshot_date, a.user_id
)
SELECT c.snapshot_date, c.user_id, c.account_id, c.identity,
       CAST(coalesce(w.sessions_28d, 0) AS BIGINT) AS sessions_28d,
       CAST(coalesce(w.sessions_90d, 0) AS BIGINT) AS sessions_90d,
       CAST(coalesce(w.active_days_28d, 0) AS BIGINT) AS active_days_28d,
       {% for e in config.tracked_events %}
       CAST(coalesce(w.{{ event_metric_column(e) | quote }}, 0) AS BIGINT) AS {{ event_metric_column(e) | quote }},
       {% endfor %}
       CAST(coalesce(w.usage_28d, 0) AS BIGINT) AS usage_28d,
       CAST(coalesce(w.usage_prev_28d, 0) AS BIGINT) AS usage_prev_28d,
       CAST(coalesce(w.usage_90d, 0) AS BIGINT) AS usage_90d,
       CAST(coalesce(w.kpi_28d, 0) AS BIGINT) AS kpi_28d,
       coalesce(w.last_seen_at, h.last_seen_at) AS last_seen_at,
       coalesce(w.last_usage_date, h.last_usage_date) AS last_usage_date,
       coalesce(h.first_session_date, w.first_session_date) AS first_session_date,
       CASE WHEN h.first_session_date IS NOT NULL THEN h.first_session_activated
            ELSE w.first_session_activated
       END AS first_session_activated
FROM contact_days c
LEFT JOIN windowed w ON w.snapshot_date = c.snapshot_date AND w.user_id = c.user_id
LEFT JOIN older_history h ON h.user_id = c.user_id
