-- One row per contact per UTC day in [$range_start, $range_end) with any session or event: the
-- sessions from raw.sessions (already swapped in), the events from events_counted.
WITH sessions_per_day AS (
    SELECT activity_date, user_id, count(*) AS sessions, max("time") AS last_session_at
    FROM raw.sessions
    WHERE activity_date BETWEEN CAST($range_start AS DATE) AND CAST($range_end AS DATE) - 1
    GROUP BY activity_date, user_id
),
events_per_day AS (
    SELECT * EXCLUDE (outcome) FROM events_counted WHERE outcome = 'loaded'
)
SELECT activity_date, user_id,
       coalesce(s.sessions, 0) AS sessions,
       coalesce(e.events, 0) AS events,
       greatest(s.last_session_at, e.last_event_at) AS last_seen_at,
       {% for event in config.tracked_events %}
       coalesce(e.{{ event_count_column(event) | quote }}, 0) AS {{ event_count_column(event) | quote }},
       {% endfor %}
       -- Null on days without a session: there was no first session to judge.
       CASE WHEN s.sessions > 0 THEN coalesce(e.first_session_activated, false) END
           AS first_session_activated
FROM sessions_per_day s FULL OUTER JOIN events_per_day e USING (activity_date, user_id)
