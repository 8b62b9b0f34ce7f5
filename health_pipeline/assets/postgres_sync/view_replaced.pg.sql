-- PostgreSQL. A view created, or replaced in place when its definition changed (the table gained a
-- column, which the view's * appends at its end). Replacing keeps its grants and the views built on
-- it; a change it cannot make in place (a column removed or retyped) fails instead of dropping them.
CREATE OR REPLACE VIEW {{ schema | quote }}.{{ view | quote }} AS
{{ query }}
