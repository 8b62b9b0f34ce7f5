-- One delivered file of an activity table (the events of one event table, all events, or sessions),
-- landed as one parquet file per UTC day, $target/day=YYYY-MM-DD/<file_name>.parquet, sorted by time
-- so that a day's run skips the other row groups. `columns` maps each landed column to whether the
-- delivery has it (one it lacks lands as NULL, for raw_activity to quarantine); events of one event
-- table (`with_event_table_name`) also carry $table_name as their event_table_name. `time_kind`
-- says how the delivery wrote its time, which lands as a UTC timestamp wherever it can be read as one:
--   timestamptz  a timestamp with a zone: converted to UTC
--   timestamp    a timestamp without one: already UTC
--   epoch        a number since 1970: microseconds from 10^14 on (after 5138 in milliseconds),
--                else milliseconds
--   text         as written (raw_activity parses it, and quarantines what it cannot)
COPY (
WITH delivered AS (
    SELECT {% for name, present in columns.items() %}
           {% if name == "time" and present and time_kind == "timestamptz" %}CAST("time" AS TIMESTAMP)
           {%- elif name == "time" and present and time_kind == "epoch" %}
           CASE WHEN abs("time") >= 100000000000000 THEN make_timestamp("time") ELSE epoch_ms("time") END
           {%- elif present %}{{ name | quote }}
           {%- else %}CAST(NULL AS VARCHAR){% endif %} AS {{ name | quote }}{{ "," if not loop.last }}
           {% endfor %}
           {% if with_event_table_name %}, $table_name AS "event_table_name"{% endif %}
    FROM delivered_rows
)
SELECT *,
       CAST({% if time_kind == "text" %}TRY_CAST("time" AS TIMESTAMPTZ){% else %}"time"{% endif %} AS DATE) AS "day"
FROM delivered
ORDER BY "time"
) TO $target (FORMAT parquet, PARTITION_BY ("day"), FILENAME_PATTERN '{{ file_name }}', OVERWRITE_OR_IGNORE)
