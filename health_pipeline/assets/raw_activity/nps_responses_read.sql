{% import "assets/raw_activity/_raw_columns.sql" as raw %}
-- Every row of the optional nps_responses table (a survey answer, 0 to 10, by a user or for an
-- account), classified: loaded, duplicate, excluded, or a quarantine reason. A user's response
-- counts for the contact the user id resolves to (activity_attribution: merges followed), and
-- is left out, as their activity is, when that contact is excluded; its account is the one the
-- contact belonged to on the day of the response (account_metrics reads the history). A row that
-- names an account counts for that account. The same respondent's copies at the same time are
-- one response.
CREATE OR REPLACE TEMP TABLE nps_responses_read AS
{% call raw.classified("response_key", "responded_at", ["score"]) %}
    WITH response_rows AS (
        SELECT {{ raw.column(nps_responses, "user_id") }}, {{ raw.column(nps_responses, "account_id") }},
               {{ raw.timestamp(nps_responses, "responded_at") }} AS responded_at,
               {{ raw.column(nps_responses, "score", "DOUBLE") }},
               source_file, source_row, {{ raw.row_json(nps_responses) }} AS row_json,
               {{ raw.unreadable(nps_responses, "responded_at") }} AS date_unreadable,
               {{ raw.unreadable(nps_responses, "score") }} AS score_unreadable
        FROM {{ raw.rows(nps_responses) }}
    ),
    attributed AS (
        SELECT r.* EXCLUDE (user_id), coalesce(a.contact_id, r.user_id) AS user_id,
               CASE WHEN r.user_id IS NOT NULL THEN coalesce(a.outcome, 'unknown_user') END AS user_outcome,
               coalesce(r.score BETWEEN 0 AND 10 AND r.score = round(r.score), false) AS score_is_valid
        FROM response_rows r
        LEFT JOIN activity_attribution a ON a.user_id = r.user_id
    )
    SELECT user_id, account_id, responded_at,
           -- The source column `score` (a number) is what the tests below read, not this alias.
           CASE WHEN score_is_valid THEN CAST(score AS INTEGER) END AS score,
           source_file, source_row, row_json,
           struct_pack(user_id, account_id, responded_at) AS response_key,
           NULL::VARCHAR AS attribute_problem,
           CASE
               WHEN user_id IS NULL AND account_id IS NULL THEN 'null_respondent'
               WHEN date_unreadable THEN 'unparseable_responded_at'
               WHEN responded_at IS NULL THEN 'null_responded_at'
               WHEN score_unreadable THEN 'unparseable_score'
               WHEN score IS NULL THEN 'null_score'
               WHEN NOT score_is_valid THEN 'score_out_of_range'
               WHEN user_outcome <> 'loaded' THEN user_outcome  -- excluded, or a quarantine reason
               WHEN account_id IS NOT NULL THEN {{ raw.account_problem("account_id") }}
           END AS problem
    FROM attributed
{% endcall %}
