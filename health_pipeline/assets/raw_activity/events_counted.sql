-- The batch's events counted in one pass over their classification (events_classified): per
-- contact and UTC day for the loaded ones (the daily fact's event columns), and per outcome for
-- the rest, whose days and contacts do not matter. first_session_activated: whether the
-- contact's first session that day (raw.sessions, already swapped in) included the onboarding
-- first-session event.
CREATE OR REPLACE TEMP TABLE events_counted AS
WITH first_sessions AS (
    SELECT activity_date, user_id, arg_min(session_id, "time") AS first_session_id
    FROM raw.sessions
    WHERE activity_date BETWEEN CAST($range_start AS DATE) AND CAST($range_end AS DATE) - 1
    GROUP BY activity_date, user_id
),
events AS (
    SELECT *,
           CASE WHEN outcome = 'loaded' THEN CAST("time" AS DATE) END AS loaded_date,
           CASE WHEN outcome = 'loaded' THEN contact_id END AS loaded_contact
    FROM events_classified
)
SELECT e.outcome, e.loaded_date AS activity_date, e.loaded_contact AS user_id,
       count(*) AS events, max(e."time") AS last_event_at,
       {% for event in config.tracked_events %}
       count(*) FILTER (WHERE e.event_table_name = $tracked_event_{{ loop.index }})
           AS {{ event_count_column(event) | quote }},
       {% endfor %}
       bool_or(e.session_id = s.first_session_id AND e.event_table_name = $first_session_event)
           AS first_session_activated
FROM events e
LEFT JOIN first_sessions s ON s.activity_date = e.loaded_date AND s.user_id = e.loaded_contact
GROUP BY e.outcome, e.loaded_date, e.loaded_contact
