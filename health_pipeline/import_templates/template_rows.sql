-- One import template's rows for $snapshot_date: a row per account in the sync table that day
-- whose match column has a value, each column under the tool's header, formatted as the tool's
-- importer reads it. Formats and labels are bound values ($fmt_<i>, $label_<i>_<band>).
SELECT
    {% for column in columns %}
    {% set i = loop.index0 %}
    {% set source = column.source | quote %}
    {% if column.format == "number" %}
    round(CAST({{ source }} AS DOUBLE), {{ column.decimals | int }})
    {% elif column.format == "date" %}
    strftime({{ source }}, $fmt_{{ i }})
    {% elif column.format == "band" %}
    CASE {{ source }}{% for band in bands %} WHEN '{{ band }}' THEN $label_{{ i }}_{{ band }}{% endfor %} END
    {% elif column.max_length %}
    left(CAST({{ source }} AS VARCHAR), {{ column.max_length | int }})
    {% else %}
    CAST({{ source }} AS VARCHAR)
    {% endif %}
        AS {{ column.header | quote }}{{ "," if not loop.last }}
    {% endfor %}
FROM "export"."account_health"
WHERE "snapshot_date" = $snapshot_date AND {{ match_source | quote }} IS NOT NULL
ORDER BY "account_id"
