{% import "assets/raw_activity/_activity.sql" as activity_rows %}
-- Inside the swap's transaction: delete the copies of this range's loaded ids that an earlier
-- run stored on a later day, outside the range; this range's copy is earlier, so it is the one
-- to keep. Returns the days that lost rows, so their daily facts are recomputed.
DELETE FROM raw.{{ activity.name | quote }} s
USING {{ (activity.name ~ "_loaded") | quote }} l
WHERE {{ activity_rows.superseded(activity) }}
RETURNING s.activity_date
