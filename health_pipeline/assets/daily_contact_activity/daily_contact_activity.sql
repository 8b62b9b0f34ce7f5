-- One row per contact per UTC day in [$first_day, $last_day] (and on the days in $extra_days,
-- whose raw activity another run changed) with any session or event.
{% macro in_days(column) -%}
({{ column }} BETWEEN $first_day AND $last_day{% if extra_days %} OR list_contains($extra_days, {{ column }}){% endif %})
{%- endmacro %}
WITH sessions_per_day AS (
    SELECT activity_date, user_id, count(*) AS sessions, max("time") AS last_session_at,
           arg_min(session_id, "time") AS first_session_id
    FROM raw.sessions WHERE {{ in_days("activity_date") }}
    GROUP BY activity_date, user_id
),
events_per_day AS (
    SELECT e.activity_date, e.user_id, count(*) AS events, max(e."time") AS last_event_at,
           {% for event in config.tracked_events %}
           count(*) FILTER (WHERE e.event_table_name = $tracked_event_{{ loop.index }})
               AS {{ event_count_column(event) | quote }},
           {% endfor %}
           bool_or(e.session_id = s.first_session_id AND e.event_table_name = $first_session_event)
               AS first_session_activated
    FROM raw.events e
    LEFT JOIN sessions_per_day s USING (activity_date, user_id)
    WHERE {{ in_days("e.activity_date") }}
    GROUP BY e.activity_date, e.user_id
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
