{% import "assets/_shared.sql" as shared %}
-- One row per account whose band on a snapshot date in [$first_day, $last_day] differs from
-- its band the day before. $bands lists the bands best first, so a move down the list is worse.
-- what_changed says what moved since the day before, what_changed_7d since 7 days before
-- (shared.what_changed); top_drag and score_reason, what holds the score down now.
WITH snapshot_dates AS (
    {{ shared.snapshot_dates() }}
),
accounts_on_day AS (
    {{ shared.accounts_on_snapshot_dates() }}
)
SELECT h.account_id, a.crm_account_id, a.name AS account_name, a.owner, h.snapshot_date, h.segment,
       h.previous_band AS from_band, h.health_band AS to_band,
       CASE WHEN list_position($bands::VARCHAR[], h.health_band) > list_position($bands::VARCHAR[], h.previous_band)
            THEN 'worse' ELSE 'better' END AS direction,
       h.band_source, h.health_score, h.previous_score_7d, h.score_delta_7d,
       {{ shared.what_changed("h", "yesterday", config) }} AS what_changed,
       {{ shared.what_changed("h", "week_ago", config) }} AS what_changed_7d,
       h.top_drag, h.score_reason, $computed_at::TIMESTAMP AS computed_at, h.scorecard_version
FROM core.account_health h
JOIN accounts_on_day a ON a.account_id = h.account_id AND a.snapshot_date = h.snapshot_date
{{ shared.yesterday_and_week_ago("h", "core") }}
WHERE h.snapshot_date BETWEEN $first_day AND $last_day AND h.band_changed
