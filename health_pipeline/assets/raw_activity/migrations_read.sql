{% import "assets/raw_activity/_raw_columns.sql" as raw %}
-- Every row of the optional user_migrations export, with its outcome: loaded or a quarantine reason.
CREATE OR REPLACE TEMP TABLE migrations_read AS
{% if migrations is none %}
SELECT NULL::VARCHAR AS from_user_id, NULL::VARCHAR AS to_user_id, NULL::TIMESTAMP AS utc_time,
       NULL::VARCHAR AS source_file, NULL::BIGINT AS source_row, NULL::JSON AS row_json,
       NULL::VARCHAR AS outcome
WHERE false
{% else %}
SELECT {{ raw.column(migrations, "from_user_id") }}, {{ raw.column(migrations, "to_user_id") }},
       {{ raw.utc_time(migrations, "time") }} AS utc_time,
       source_file, source_row, {{ raw.row_json(migrations) }} AS row_json,
       CASE
           WHEN {{ raw.value(migrations, "from_user_id") }} IS NULL OR {{ raw.value(migrations, "to_user_id") }} IS NULL
               THEN 'null_id'
           WHEN "time" IS NULL THEN 'null_time'
           WHEN {{ raw.utc_time(migrations, "time") }} IS NULL THEN 'unparseable_time'
           WHEN {{ raw.value(migrations, "from_user_id") }} = {{ raw.value(migrations, "to_user_id") }}
               THEN 'self_merge'
           ELSE 'loaded'
       END AS outcome
FROM {{ raw.rows(migrations) }}
{% endif %}
