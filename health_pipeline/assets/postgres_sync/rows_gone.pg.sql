-- PostgreSQL. The synced rows of the range [first_day, last_day] that the export no longer has
-- (an account re-scored out of a day, say): deleted, so the range matches the export exactly.
DELETE FROM {{ schema | quote }}.{{ table | quote }} AS synced
WHERE synced."snapshot_date" BETWEEN %(first_day)s AND %(last_day)s
  AND NOT EXISTS (
      SELECT 1 FROM {{ staging | quote }} AS staged
      WHERE {% for name in key %}staged.{{ name | quote }} = synced.{{ name | quote }}{{ " AND " if not loop.last }}{% endfor %}
  )
