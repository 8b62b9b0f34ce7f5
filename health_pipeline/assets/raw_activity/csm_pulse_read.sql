{% import "assets/raw_activity/_raw_columns.sql" as raw %}
-- Every row of the optional csm_pulse table (a CSM's sentiment about an account, as of a day),
-- classified: loaded, duplicate, or a quarantine reason. An account has one pulse a day: a second
-- row of the same account and day that says something else is a conflicting_duplicate.
CREATE OR REPLACE TEMP TABLE csm_pulse_read AS
{% call raw.classified("pulse_key", "pulse_date", ["sentiment", "note", "author"]) %}
    WITH pulse_rows AS (
        SELECT {{ raw.column(csm_pulse, "account_id") }}, {{ raw.column(csm_pulse, "pulse_date", "DATE") }},
               {{ raw.column(csm_pulse, "sentiment") }}, {{ raw.column(csm_pulse, "note") }},
               {{ raw.column(csm_pulse, "author") }},
               source_file, source_row, {{ raw.row_json(csm_pulse) }} AS row_json,
               {{ raw.unreadable(csm_pulse, "pulse_date") }} AS date_unreadable
        FROM {{ raw.rows(csm_pulse) }}
    )
    SELECT * EXCLUDE (date_unreadable),
           struct_pack(account_id, pulse_date) AS pulse_key,
           NULL::VARCHAR AS attribute_problem,
           CASE
               WHEN account_id IS NULL THEN 'null_account_id'
               WHEN date_unreadable THEN 'unparseable_pulse_date'
               WHEN pulse_date IS NULL THEN 'null_pulse_date'
               WHEN sentiment IS NULL OR NOT list_contains($sentiments::VARCHAR[], sentiment) THEN 'unknown_sentiment'
               ELSE {{ raw.account_problem("account_id") }}
           END AS problem
    FROM pulse_rows
{% endcall %}
