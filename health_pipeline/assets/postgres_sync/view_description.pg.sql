-- PostgreSQL. What a row of the view is, as its comment, which a connector's schema browser shows.
COMMENT ON VIEW {{ schema | quote }}.{{ view | quote }} IS %(description)s
