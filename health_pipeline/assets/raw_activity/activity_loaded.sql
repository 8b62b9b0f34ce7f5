-- The loaded rows of an activity table, as raw.<table> stores them: a view, not a copy, since
-- they are read once, by the swap.
CREATE OR REPLACE TEMP VIEW {{ (activity.name ~ "_loaded") | quote }} AS
SELECT CAST("time" AS DATE) AS activity_date, {{ activity.id_column | quote }}, contact_id AS user_id,
       {% for c in activity.extra_columns %}{{ c | quote }}, {% endfor %}"time"
FROM {{ (activity.name ~ "_classified") | quote }} WHERE outcome = 'loaded'
