{% import "assets/raw_activity/_raw_columns.sql" as raw %}
-- Every row of the users export, classified: loaded, duplicate, or a quarantine reason.
CREATE OR REPLACE TEMP TABLE users_read AS
{% call raw.classified("user_id", "joindate, identity",
                       ["identity", "joindate", "account_id", "role", "id_as_written"]) %}
    SELECT {{ raw.column(users, "user_id") }}, {{ raw.column(users, "identity") }},
           {{ raw.column(users, "joindate", "DATE") }}, {{ raw.column(users, "account_id") }},
           {{ raw.column(users, "role") }},
           TRY_CAST("user_id" AS VARCHAR) AS id_as_written,  -- 'u1 ' beside 'u1' is a conflict
           source_file, source_row, {{ raw.row_json(users) }} AS row_json,
           CASE
               WHEN {{ raw.value(users, "user_id") }} IS NULL THEN 'null_id'
               WHEN {{ raw.unreadable(users, "joindate") }} THEN 'unparseable_joindate'
           END AS problem
    FROM {{ raw.rows(users) }}
{% endcall %}
