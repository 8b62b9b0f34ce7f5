{% import "assets/_shared.sql" as shared %}
-- Scores expected (every account that was a customer on the day, every day in [$first_day, $last_day]) against
-- scores found: how many are missing, repeated or unexpected, and the first missing ones.
WITH snapshot_dates AS (
    {{ shared.snapshot_dates() }}
),
accounts_on_day AS (
    {{ shared.accounts_on_snapshot_dates() }}
),
expected_scores AS (
    SELECT snapshot_date, account_id FROM accounts_on_day WHERE is_customer
),
scores_per_account_day AS (
    SELECT snapshot_date, account_id, count(*) AS scores
    FROM core.account_health WHERE snapshot_date BETWEEN $first_day AND $last_day
    GROUP BY ALL
),
missing_scores AS (
    SELECT * FROM expected_scores ANTI JOIN scores_per_account_day USING (snapshot_date, account_id)
)
SELECT (SELECT count(*) FROM expected_scores),
       (SELECT coalesce(sum(scores), 0) FROM scores_per_account_day),
       (SELECT count(*) FROM missing_scores),
       (SELECT count(*) FROM scores_per_account_day WHERE scores > 1),
       (SELECT count(*) FROM scores_per_account_day
        ANTI JOIN expected_scores USING (snapshot_date, account_id)),
       (SELECT list(account_id || ' on ' || snapshot_date ORDER BY snapshot_date, account_id)[1:$examples]
        FROM missing_scores)
