-- `history` with the staged `snapshot` (one row per `key`, with its `attributes`) recorded in it. A current version the
-- snapshot repeats stays open. One that changed or left the snapshot closes on $changes_from,
-- and the snapshot's row opens the next version from that day. A key never seen before opens
-- with no valid_from: its first attributes are the best knowledge of its past. A version that
-- would close on the day it opened never applied to a processed day, and is dropped.
CREATE OR REPLACE TABLE {{ history }} AS
WITH recorded AS (
    SELECT * FROM {{ history }}
),
open_versions AS (
    SELECT * FROM recorded WHERE valid_to IS NULL
),
repeated_keys AS (
    SELECT o.{{ key | quote }}
    FROM open_versions o JOIN {{ snapshot }} s ON s.{{ key | quote }} = o.{{ key | quote }}
    WHERE {% for c in attributes %}o.{{ c | quote }} IS NOT DISTINCT FROM s.{{ c | quote }}{{ " AND " if not loop.last }}{% endfor %}
),
closed_versions AS (
    SELECT * REPLACE ($changes_from::DATE AS valid_to)
    FROM open_versions ANTI JOIN repeated_keys USING ({{ key | quote }})
),
opened_versions AS (
    SELECT s.*,
           CASE WHEN s.{{ key | quote }} IN (SELECT {{ key | quote }} FROM recorded) THEN $changes_from::DATE END
               AS valid_from,
           NULL::DATE AS valid_to
    FROM {{ snapshot }} s ANTI JOIN repeated_keys USING ({{ key | quote }})
)
SELECT * FROM recorded WHERE valid_to IS NOT NULL
UNION ALL BY NAME
SELECT * FROM open_versions SEMI JOIN repeated_keys USING ({{ key | quote }})
UNION ALL BY NAME
SELECT * FROM closed_versions WHERE valid_from IS NULL OR valid_from < valid_to
UNION ALL BY NAME
SELECT * FROM opened_versions
ORDER BY {{ key | quote }}, valid_from NULLS FIRST
