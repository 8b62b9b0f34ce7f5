-- The loaded rows of an activity table, as raw.<table> stores them: its day, id (an integer id
-- as it is, which stores in a fraction of its text's space), contact and time.
CREATE OR REPLACE TEMP VIEW {{ (activity.name ~ "_loaded") | quote }} AS
SELECT CAST("time" AS DATE) AS activity_date, {{ activity.id_column | quote }}, contact_id AS user_id, "time"
FROM {{ (activity.name ~ "_classified") | quote }} WHERE outcome = 'loaded'
