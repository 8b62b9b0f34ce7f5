-- Accounts per segment and bin of each component on $report_date, for the metric pages. A null bin
-- is an account whose metric was missing.
{% for component in components %}
SELECT $component_{{ loop.index0 }} AS "component", "segment",
       {{ explanation_column(component, "bin") | quote }} AS "bin", count(*) AS "accounts"
FROM "export"."account_health"
WHERE "snapshot_date" = $report_date
GROUP BY ALL
{{ "UNION ALL" if not loop.last }}
{% endfor %}
ORDER BY ALL
