-- The rows of a Heap (or CRM) table in the warehouse, each of the contract's columns it has named
-- as the contract names it. `part` says which: the rows whose time is in [$start, $end) (`days`),
-- those without a time (`undated`), or all of them (`whole`, for users and the other dimensions).
SELECT {% for name, spelled in columns.items() %}{{ spelled | quote }} AS {{ name | quote }}{{ ", " if not loop.last }}{% endfor %}
FROM {{ schema | quote }}.{{ table | quote }}
{% if part == "days" %}
WHERE {{ columns["time"] | quote }} >= $start AND {{ columns["time"] | quote }} < $end
{% elif part == "undated" %}
WHERE {{ columns["time"] | quote }} IS NULL
{% endif %}
