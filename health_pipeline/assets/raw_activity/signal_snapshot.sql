-- The rows of the optional signal table `table` (csm_pulse, tickets, nps_responses, invoices)
-- that load, in its `columns`: what raw.<table> is replaced with.
CREATE OR REPLACE TEMP TABLE {{ (table ~ "_snapshot") | quote }} AS
SELECT {% for c in columns %}{{ c | quote }}{{ ", " if not loop.last }}{% endfor %}

FROM {{ (table ~ "_read") | quote }} WHERE outcome = 'loaded'
