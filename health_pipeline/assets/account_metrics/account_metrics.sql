{% import "assets/_shared.sql" as shared %}
-- One row per account in force per snapshot date in [$first_day, $last_day] (raw.account_history):
-- its contacts' metrics rolled up, Heap's three rules as flags, and the signals beyond product
-- usage (the CSM's pulse, tickets, NPS, invoices), each read as of the day from its own dates.
-- Accounts with no contacts or no activity have zero counts and null ratios.
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
    SELECT a.snapshot_date, a.account_id, a.seats_purchased,
           p.top_user_usage_28d, p.last_usage_date, p.power_contact_last_usage_date,
           {% for c in zero_filled %}
           coalesce(p.{{ c | quote }}, 0) AS {{ c | quote }}{{ "," if not loop.last }}
           {% endfor %}
    FROM accounts_on_day a
    LEFT JOIN per_account p ON p.snapshot_date = a.snapshot_date AND p.account_id = a.account_id
),
power_contacts_left AS (
    -- Power contacts of the account whose version there ended in W90 (valid_to, the first day it
    -- no longer held, in [D-89, D]) and who are not contacts of the account on D: moved to
    -- another account, or gone from the users export. A change of role is not leaving.
    SELECT d.snapshot_date, v.account_id, count(DISTINCT v.user_id) AS power_contacts_left_90d
    FROM snapshot_dates d
    JOIN raw.contact_history v
      ON v.valid_to BETWEEN d.snapshot_date - 89 AND d.snapshot_date
     AND coalesce(v.valid_from < v.valid_to, true)
    WHERE {{ shared.is_power_contact("v.role") }} AND v.excluded_reason IS NULL
      AND NOT EXISTS (SELECT 1 FROM contacts_on_day c
                      WHERE c.snapshot_date = d.snapshot_date AND c.user_id = v.user_id
                        AND c.account_id = v.account_id)
    GROUP BY d.snapshot_date, v.account_id
),
latest_pulses AS (
    -- Each account's latest CSM pulse on or before the day (one a day per account).
    SELECT a.snapshot_date, a.account_id, p.pulse_date, p.sentiment
    FROM accounts_on_day a
    ASOF LEFT JOIN raw.csm_pulse p ON p.account_id = a.account_id AND a.snapshot_date >= p.pulse_date
),
dated_tickets AS (
    SELECT *, CAST(opened_at AS DATE) AS opened_on, CAST(closed_at AS DATE) AS closed_on,
           -- Closed, but since when is unknown: open on no day.
           closed_at IS NULL AND list_contains($closed_statuses::VARCHAR[], coalesce(status, '')) AS closed_undated
    FROM raw.tickets
),
{% set is_open = "coalesce(t.closed_on > d.snapshot_date, NOT t.closed_undated)" %}
ticket_figures AS (
    -- Tickets open at the end of the day (opened by then and not closed by then), opened in W28,
    -- closed in W90; only tickets that may be any of these are joined to the day.
    SELECT d.snapshot_date, t.account_id,
           count(*) FILTER (WHERE {{ is_open }}) AS open_tickets,
           count(*) FILTER (WHERE {{ is_open }} AND list_contains($high_priorities::VARCHAR[], t.priority))
               AS open_high_priority_tickets,
           count(*) FILTER (WHERE t.opened_on >= d.snapshot_date - 27) AS tickets_opened_28d,
           median(epoch(t.closed_at - t.opened_at) / 86400)
               FILTER (WHERE t.closed_on BETWEEN d.snapshot_date - 89 AND d.snapshot_date)
               AS median_days_to_close_90d
    FROM snapshot_dates d
    JOIN dated_tickets t
      ON t.opened_on <= d.snapshot_date AND coalesce(t.closed_on >= d.snapshot_date - 89, true)
    GROUP BY d.snapshot_date, t.account_id
),
nps_figures AS (
    -- Responses in W90, each for its account, or for the account its contact belonged to (and
    -- was counted in) on the day of the response. Promoters score 9-10, detractors 0-6.
    SELECT d.snapshot_date, coalesce(r.account_id, c.account_id) AS account_id,
           count(*) AS nps_responses_90d,
           100.0 * (count(*) FILTER (WHERE r.score >= 9) - count(*) FILTER (WHERE r.score <= 6)) / count(*)
               AS nps_90d
    FROM snapshot_dates d
    JOIN raw.nps_responses r
      ON CAST(r.responded_at AS DATE) BETWEEN d.snapshot_date - 89 AND d.snapshot_date
    LEFT JOIN raw.contact_history c
      ON r.account_id IS NULL AND c.user_id = r.user_id
     AND {{ shared.in_force("c", "CAST(r.responded_at AS DATE)") }}
    WHERE r.account_id IS NOT NULL OR (c.account_id IS NOT NULL AND c.excluded_reason IS NULL)
    GROUP BY ALL
),
first_due_dates AS (
    SELECT account_id, min(due_date) AS first_due_date FROM raw.invoices GROUP BY account_id
),
overdue_invoices AS (
    -- Invoices overdue at the end of the day: due before it, and not paid on or before it.
    SELECT d.snapshot_date, i.account_id,
           sum(coalesce(i.amount, 0)) AS overdue_amount,
           max(d.snapshot_date - i.due_date) AS days_overdue
    FROM snapshot_dates d
    JOIN raw.invoices i ON i.due_date < d.snapshot_date AND coalesce(i.paid_at > d.snapshot_date, true)
    GROUP BY d.snapshot_date, i.account_id
),
signals AS (
    SELECT e.*,
           p.pulse_date, p.sentiment,
           coalesce(l.power_contacts_left_90d, 0) AS power_contacts_left_90d,
           coalesce(t.open_tickets, 0) AS open_tickets,
           coalesce(t.open_high_priority_tickets, 0) AS open_high_priority_tickets,
           coalesce(t.tickets_opened_28d, 0) AS tickets_opened_28d,
           t.median_days_to_close_90d,
           n.nps_90d, coalesce(n.nps_responses_90d, 0) AS nps_responses_90d,
           f.first_due_date, o.overdue_amount, o.days_overdue
    FROM every_account_day e
    LEFT JOIN power_contacts_left l USING (snapshot_date, account_id)
    LEFT JOIN latest_pulses p USING (snapshot_date, account_id)
    LEFT JOIN ticket_figures t USING (snapshot_date, account_id)
    LEFT JOIN nps_figures n USING (snapshot_date, account_id)
    LEFT JOIN first_due_dates f USING (account_id)
    LEFT JOIN overdue_invoices o USING (snapshot_date, account_id)
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
       -- Heap's rules: active in 28 days (is_inactive_90d above), at most one user of the key event.
       active_users_28d > 0 AS is_active_28d,
       kpi_users_28d <= 1 AS at_most_one_kpi_user_28d,
       power_contacts_active_28d > 0 AS has_active_power_contact,
       power_contacts_left_90d,
       active_users_28d / nullif(seats_purchased, 0) AS license_utilisation,
       CAST(snapshot_date - pulse_date AS INTEGER) AS days_since_pulse,
       -- The latest pulse counts for $pulse_days days from its date: red 0, yellow 1, green 2.
       CASE WHEN snapshot_date - pulse_date < $pulse_days
            THEN list_position($sentiments_worst_first::VARCHAR[], sentiment) - 1 END AS pulse_score,
       open_tickets, open_high_priority_tickets, tickets_opened_28d, median_days_to_close_90d,
       nps_90d, nps_responses_90d,
       -- Known from the account's first due date on: zero until an invoice is overdue.
       CASE WHEN first_due_date <= snapshot_date THEN coalesce(overdue_amount, 0) END AS overdue_amount,
       CASE WHEN first_due_date <= snapshot_date THEN CAST(coalesce(days_overdue, 0) AS INTEGER) END
           AS days_overdue,
       {% for e in config.tracked_events %}
       {{ event_users_metric(e) | quote }},
       {% endfor %}
       CASE WHEN snapshot_date - pulse_date < $pulse_days THEN sentiment END AS pulse_sentiment
FROM signals
