{% import "assets/_shared.sql" as shared %}
-- One row per customer outcome and lead time L (of $lead_days) for which the account was scored
-- on the day outcome_date − L (in `scores`: core.account_health, or a candidate's re-scoring):
-- what the score, its band, its components and every metric said then, with the ARR at stake
-- (the outcome's arr_before, else the account's ARR that day). Only that one day is read, and it
-- is before the outcome, so nothing from on or after an outcome's date enters its prediction.
-- A day scored by the configuration's segments carries the configuration's version
-- ($scoring_version), so one scorecard is backtested as one; a day an earlier scorecard scored
-- keeps the version that scored it.
WITH lead_times AS (
    SELECT unnest($lead_days::INTEGER[]) AS lead_days
),
outcomes_at_lead AS (
    SELECT o.account_id, o.outcome_date, o.outcome, o.arr_before, l.lead_days,
           CAST(o.outcome_date - l.lead_days AS DATE) AS scored_on
    FROM raw.outcomes o CROSS JOIN lead_times l
    WHERE l.lead_days >= 1
)
SELECT CASE WHEN list_contains($segment_versions::VARCHAR[], h.scorecard_version) THEN $scoring_version
            ELSE h.scorecard_version END AS scorecard_version,
       o.lead_days, o.account_id, a.name AS account_name, a.owner,
       o.outcome_date, o.outcome, o.scored_on,
       h.health_score, h.health_band, h.top_drag, h.score_reason, coalesce(o.arr_before, a.arr) AS arr,
       {% for metric in config.account_metrics %}CAST(m.{{ metric | quote }} AS DOUBLE) AS {{ metric | quote }},
       {% endfor %}
       {% for component in config.components %}
       CAST(h.{{ explanation_column(component, "points") | quote }} AS DOUBLE)
           AS {{ explanation_column(component, "points") | quote }}{{ "," if not loop.last }}
       {% endfor %}
FROM outcomes_at_lead o
JOIN {{ scores }} h ON h.account_id = o.account_id AND h.snapshot_date = o.scored_on
JOIN core.account_metrics m ON m.account_id = o.account_id AND m.snapshot_date = o.scored_on
JOIN raw.account_history a ON a.account_id = o.account_id AND {{ shared.in_force("a", "o.scored_on") }}
ORDER BY o.lead_days, o.outcome_date, o.account_id, o.outcome
