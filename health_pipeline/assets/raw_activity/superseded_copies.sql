-- Inside the swap's transaction: delete the copies of this range's loaded ids that an earlier
-- run stored on a later day, outside the range; this range's copy is earlier, so it is the one
-- to keep. Returns the days that lost rows, so their daily facts are recomputed.
DELETE FROM raw.{{ activity.name | quote }} s
USING {{ (activity.name ~ "_loaded") | quote }} l
WHERE s.{{ activity.id_column | quote }} = l.{{ activity.id_column | quote }}
  AND s.activity_date NOT BETWEEN CAST($range_start AS DATE) AND CAST($range_end AS DATE) - 1
  AND s."time" > l."time"
RETURNING s.activity_date
