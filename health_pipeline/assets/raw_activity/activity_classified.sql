-- Every in-range row of an activity table with its outcome: loaded, duplicate, excluded (an
-- excluded identity's activity) or a quarantine reason. Re-synced exports repeat rows: one
-- copy per id is kept, the earliest, across all days: a copy that an earlier run stored on
-- another day with an earlier time wins over this range's (`stored`: raw.<table> exists).
-- About 1 % of ids repeat, so only their rows are ordered; ordering every row was the raw
-- stage's largest cost. DuckDB would materialise the CTEs read twice: only the small list of
-- repeated ids is worth it.
{% set id = activity.id_column | quote %}
CREATE OR REPLACE TEMP TABLE {{ (activity.name ~ "_classified") | quote }} AS
WITH checked AS NOT MATERIALIZED (
    SELECT *,
           CASE
               WHEN {{ id }} IS NULL THEN 'null_id'
               WHEN user_id IS NULL THEN 'null_user_id'
               {% if "event_table_name" in activity.read_columns %}
               WHEN event_table_name IS NULL THEN 'null_event_name'
               {% endif %}
           END AS problem
    FROM {{ (activity.name ~ "_in_range") | quote }}
),
valid AS NOT MATERIALIZED (
    SELECT * FROM checked WHERE problem IS NULL
),
repeated_ids AS MATERIALIZED (
    SELECT {{ id }} FROM valid GROUP BY {{ id }} HAVING count(*) > 1
),
deduplicated AS (
    SELECT * FROM checked WHERE problem IS NOT NULL
    UNION ALL
    SELECT * FROM valid ANTI JOIN repeated_ids USING ({{ id }})
    UNION ALL
    SELECT * REPLACE (
               CASE WHEN row_number() OVER (PARTITION BY {{ id }}
                                            ORDER BY "time", user_id, source_file, source_row) > 1
                    THEN 'duplicate' END AS problem)
    FROM valid SEMI JOIN repeated_ids USING ({{ id }})
),
stored_elsewhere AS MATERIALIZED (
    -- The earliest copy of each of this range's ids that is stored on a day outside the range.
    {% if stored %}
    SELECT s.{{ id }}, min(s."time") AS stored_time
    FROM raw.{{ activity.name | quote }} s SEMI JOIN valid v USING ({{ id }})
    WHERE s.activity_date NOT BETWEEN CAST($range_start AS DATE) AND CAST($range_end AS DATE) - 1
    GROUP BY s.{{ id }}
    {% else %}
    SELECT {{ id }}, NULL::TIMESTAMP AS stored_time FROM valid WHERE false
    {% endif %}
),
attributed AS (
    -- Rows of a merged-away id count for the contact it was merged into.
    SELECT d.*, coalesce(m.contact_id, d.user_id) AS contact_id
    FROM deduplicated d LEFT JOIN identity_map m ON m.user_id = d.user_id
)
SELECT a.*,
       CASE
           WHEN a.problem IS NOT NULL THEN a.problem
           WHEN e.stored_time < a."time" THEN 'duplicate'
           WHEN c.excluded_reason IS NOT NULL THEN 'excluded'
           WHEN c.user_id IS NOT NULL THEN 'loaded'
           WHEN a.contact_id IN (SELECT user_id FROM users_read) THEN 'quarantined_user'
           ELSE 'unknown_user'
       END AS outcome
FROM attributed a
LEFT JOIN contacts_snapshot c ON c.user_id = a.contact_id
LEFT JOIN stored_elsewhere e USING ({{ id }})
