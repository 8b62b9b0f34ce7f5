{#- A contact's recency over every day of the fact before a day: what contact_metrics.sql reads
   before its windows (older_history), and what a month-end checkpoint of core.contact_recency
   holds. Stored checkpoints are not recomputed when this definition changes: a change to what
   they hold goes with `DROP TABLE core.contact_recency`, which the next run rebuilds. -#}

{# The sum of the fact's counts of `events` (one per tracked event), on the fact row `alias`. #}
{% macro sum_of(events, alias="") -%}
({% for e in events %}{{ alias }}{{ event_count_column(e) | quote }}{{ " + " if not loop.last }}{% endfor %})
{%- endmacro %}

{# One row per contact with activity on a day before `before` (a DATE expression): its latest session
   or event (last_seen_at), its latest day with a usage event (usage counted over $usage_events, the
   configuration's, bound by the caller as the checkpoints' key), and its first session with whether
   it was activated. Read from the latest
   month-end checkpoint before `before` (every day up to it) and the fact's days after that one, so
   it reads at most a month of the fact when the checkpoints are kept; with none, the whole fact
   before `before`. Any checkpoint is as good as another: raw_activity forgets the ones its rewritten
   days make stale. #}
{% macro recency_before(config, before) -%}
WITH latest_checkpoint AS (
    SELECT coalesce(max("month_end"), DATE '0001-01-01') AS "month_end"
    FROM "core"."contact_recency"
    WHERE "month_end" < {{ before }} AND "usage_events" = $usage_events
),
recency_up_to_checkpoint AS (
    SELECT r."user_id", r."last_seen_at", r."last_usage_date", r."first_session_date", r."first_session_activated"
    FROM "core"."contact_recency" r
    WHERE r."month_end" = (SELECT "month_end" FROM latest_checkpoint) AND r."usage_events" = $usage_events
),
fact_after_checkpoint AS (
    SELECT f."user_id", f."last_seen_at",
           CASE WHEN {{ sum_of(config.usage_events, 'f.') }} > 0 THEN f."activity_date" END AS "last_usage_date",
           CASE WHEN f."sessions" > 0 THEN f."activity_date" END AS "first_session_date",
           CASE WHEN f."sessions" > 0 THEN f."first_session_activated" END AS "first_session_activated"
    FROM "core"."daily_contact_activity" f
    WHERE f."activity_date" > (SELECT "month_end" FROM latest_checkpoint) AND f."activity_date" < {{ before }}
)
SELECT "user_id", max("last_seen_at") AS "last_seen_at", max("last_usage_date") AS "last_usage_date",
       min("first_session_date") AS "first_session_date",
       -- No ties: the fact has one row per contact and day, and every day after the checkpoint is
       -- later than the first session it holds.
       arg_min("first_session_activated", "first_session_date") FILTER (WHERE "first_session_date" IS NOT NULL)
           AS "first_session_activated"
FROM (SELECT * FROM recency_up_to_checkpoint UNION ALL BY NAME SELECT * FROM fact_after_checkpoint)
GROUP BY "user_id"
{%- endmacro %}
