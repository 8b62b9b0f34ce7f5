{% import "assets/_shared.sql" as shared %}
{#- One row per customer account per snapshot date in [$first_day, $last_day]: segment, score,
    band, explanations, onboarding status and trend. Reads the scorecard_* tables
    (scorecard_tables.sql). The segment rule's values, component names and measure thresholds
    are parameters; the template only writes one column per component and measure. -#}

{# SQL for a segment attribute, over the account (a) and its metrics (m). #}
{% set attribute_sql = {
    "plan": "a.plan",
    "vertical": "a.vertical",
    "arr": "CAST(a.arr AS DOUBLE)",
    "contacts_total": "CAST(m.contacts_total AS DOUBLE)",
    "digital_footprint": "CASE WHEN m.contacts_total = 0 THEN 'none'"
                         ~ " WHEN m.contacts_total < $broad_footprint_contacts THEN 'light' ELSE 'broad' END",
} %}
{# A test of a segment attribute, or (`metric`) of a metric of the scored account (s). #}
{% macro condition_test(condition, value, metric=false) -%}
{% set attribute = ("s." ~ (condition.attribute | quote)) if metric else attribute_sql[condition.attribute] %}
{% set numeric = metric or segment_attributes[condition.attribute] == "number" %}
{% set value = value ~ ("::DOUBLE" if numeric else "::VARCHAR") ~ ("[]" if condition.operator in ("in", "not_in") else "") %}
{% if condition.operator == "in" %}list_contains({{ value }}, {{ attribute }})
{%- elif condition.operator == "not_in" %}NOT list_contains({{ value }}, {{ attribute }})
{%- else %}{{ attribute }} {{ {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}[condition.operator] }} {{ value }}
{%- endif %}
{%- endmacro %}

{# The first segment whose conditions all hold, else the default. #}
{% macro segment_case() -%}
{% if config.segments | length > 1 %}CASE{% for segment in config.segments[:-1] %}{% set i = loop.index0 %}
 WHEN {% for c in segment.conditions %}({{ condition_test(c, "$segment_%d_%d" % (i, loop.index0)) }}){{ " AND " if not loop.last }}{% endfor %} THEN $segment_{{ i }}
{%- endfor %} ELSE $default_segment END
{%- else %}$default_segment{% endif %}
{%- endmacro %}

{# The band override that caps the band, as {name, band}: the first that holds in
   `band_overrides`, which lists them worst band first, then in file order; NULL when none does. #}
{% macro band_cap() -%}
CASE{% for override in band_overrides %}{% set i = loop.index0 %}
 WHEN {% for c in override.conditions %}({{ condition_test(c, "$override_%d_%d" % (i, loop.index0), metric=true) }}){{ " AND " if not loop.last }}{% endfor %}
 THEN {'name': $override_{{ i }}, 'band': $override_{{ i }}_band}
{%- endfor %} END
{%- endmacro %}

{% set measures = config.onboarding.measures %}
WITH snapshot_dates AS (
    {{ shared.snapshot_dates() }}
),
accounts_on_day AS (
    {{ shared.accounts_on_snapshot_dates() }}
),
scored_accounts AS (
    -- Only customers are scored: not before customer_since, not from the churn date on. The
    -- segment rule reads the attributes in force that day.
    SELECT m.snapshot_date, m.account_id, a.customer_since, {{ segment_case() }} AS segment,
           {% for metric in config.scored_metrics %}
           CAST(m.{{ metric | quote }} AS DOUBLE) AS {{ metric | quote }}{{ "," if not loop.last }}
           {% endfor %}
    FROM core.account_metrics m
    JOIN accounts_on_day a ON a.account_id = m.account_id AND a.snapshot_date = m.snapshot_date
    WHERE m.snapshot_date BETWEEN $first_day AND $last_day AND a.is_customer
),
metric_values AS (
    SELECT snapshot_date, account_id, segment, metric, metric_value
    FROM scored_accounts
    UNPIVOT INCLUDE NULLS (metric_value FOR metric IN (
        {% for metric in config.scored_metrics %}{{ metric | quote }}{{ ", " if not loop.last }}{% endfor %}))
),
component_points AS (
    -- A null metric scores by the component's missing-data policy; 'exclude' drops it.
    SELECT v.snapshot_date, v.account_id, v.segment, c.component, c.group_name, v.metric,
           v.metric_value, b.bin,
           CASE WHEN v.metric_value IS NOT NULL THEN b.points
                WHEN c.missing = 'zero' THEN 0
                WHEN c.missing = 'neutral' THEN c.max_points / 2
           END AS points,
           CASE WHEN v.metric_value IS NULL AND c.missing = 'exclude' THEN 0 ELSE c.max_points END
               AS points_possible
    FROM metric_values v
    JOIN scorecard_components c ON c.segment = v.segment AND c.metric = v.metric
    LEFT JOIN scorecard_bins b
      ON b.segment = c.segment AND b.component = c.component
     AND (v.metric_value > b.lower OR (b.lower_inclusive AND v.metric_value = b.lower))
     AND (v.metric_value < b.upper OR (b.upper_inclusive AND v.metric_value = b.upper))
),
group_shares AS (
    SELECT p.snapshot_date, p.account_id, p.group_name, any_value(g.weight) AS weight,
           sum(coalesce(p.points, 0)) AS group_won, sum(p.points_possible) AS group_possible
    FROM component_points p
    JOIN scorecard_groups g ON g.segment = p.segment AND g.group_name = p.group_name
    GROUP BY p.snapshot_date, p.account_id, p.group_name
),
account_shares AS (
    -- Groups with nothing possible (every component excluded) drop out of the weights.
    SELECT snapshot_date, account_id,
           sum(weight) FILTER (WHERE group_possible > 0) AS live_weight,
           sum(weight * group_won / group_possible) FILTER (WHERE group_possible > 0) AS weighted_share
    FROM group_shares
    GROUP BY snapshot_date, account_id
),
component_losses AS (
    -- What each component cost, in health-score points.
    SELECT p.*,
           coalesce(100 * g.weight * (p.points_possible - coalesce(p.points, 0))
                    / nullif(g.group_possible, 0) / nullif(s.live_weight, 0), 0) AS score_lost
    FROM component_points p
    JOIN group_shares g USING (snapshot_date, account_id, group_name)
    JOIN account_shares s USING (snapshot_date, account_id)
),
account_scores AS (
    SELECT l.snapshot_date, l.account_id,
           round(100 * (any_value(s.weighted_share) / any_value(s.live_weight)), 1) AS health_score,
           -- The costliest component; ties go to the first name.
           first({'component': l.component, 'metric': l.metric, 'value': l.metric_value,
                  'bin': l.bin, 'lost': l.score_lost} ORDER BY l.score_lost DESC, l.component)
               FILTER (WHERE l.score_lost > 0) AS drag,
           coalesce(string_agg(l.component, ',' ORDER BY l.component) FILTER (WHERE l.metric_value IS NULL), '')
               AS missing_components,
           {% for component in config.components %}
           {% set i = loop.index0 %}
           {% for suffix, source in explanation_sources %}
           max({{ source }}) FILTER (WHERE component = $component_{{ i }})
               AS {{ explanation_column(component, suffix) | quote }}{{ "," if not loop.last }}
           {% endfor %}{{ "," if not loop.last }}
           {% endfor %}
    FROM component_losses l JOIN account_shares s USING (snapshot_date, account_id)
    GROUP BY l.snapshot_date, l.account_id
),
{% if config.onboarding.ends_on_green %}
activated_earlier AS (
    -- Accounts in their first $onboarding_days days as customers whose activation was green on an
    -- earlier day as a customer: their onboarding ended on that day.
    SELECT DISTINCT s.snapshot_date, s.account_id
    FROM scored_accounts s
    JOIN core.account_metrics x
      ON x.account_id = s.account_id AND x.snapshot_date >= s.customer_since AND x.snapshot_date < s.snapshot_date
    WHERE s.snapshot_date - s.customer_since < $onboarding_days
      AND x.snapshot_date >= $first_day::DATE - $onboarding_days
      AND {% for m in measures %}x.{{ m.metric | quote }} >= $measure_{{ loop.index0 }}_green{{ " AND " if not loop.last }}{% endfor %}

),
{% endif %}
with_activation AS (
    SELECT s.*, sc.* EXCLUDE (snapshot_date, account_id),
           coalesce(s.snapshot_date - s.customer_since < $onboarding_days, false)
           {% if config.onboarding.ends_on_green %}
           AND (s.snapshot_date, s.account_id) NOT IN (SELECT (snapshot_date, account_id) FROM activated_earlier)
           {% endif %}
               AS in_onboarding,
           {% if band_overrides %}{{ band_cap() }} AS band_cap,{% endif %}
           {% for m in measures %}
           CASE WHEN s.{{ m.metric | quote }} >= $measure_{{ loop.index0 }}_green THEN 'green'
                WHEN s.{{ m.metric | quote }} >= $measure_{{ loop.index0 }}_yellow THEN 'yellow'
                ELSE 'red'
           END AS {{ activation_column(m.name) | quote }}{{ "," if not loop.last }}
           {% endfor %}
    FROM scored_accounts s
    JOIN account_scores sc USING (snapshot_date, account_id)
),
with_status AS (
    -- The worst colour among the measures.
    {% set colours %}{% for m in measures %}{{ activation_column(m.name) | quote }}{{ ", " if not loop.last }}{% endfor %}{% endset %}
    SELECT *,
           CASE WHEN 'red' IN ({{ colours }}) THEN 'red'
                WHEN 'yellow' IN ({{ colours }}) THEN 'yellow'
                ELSE 'green'
           END AS activation_status
    FROM with_activation
),
with_band AS (
    SELECT w.*,
           CASE WHEN w.in_onboarding THEN CASE w.activation_status
                    {% for colour, band in activation_bands.items() %}
                    WHEN '{{ colour }}' THEN '{{ band }}'
                    {% endfor %}
                END
                WHEN w.health_score >= c.healthy_from THEN 'healthy'
                WHEN w.health_score >= c.neutral_from THEN 'neutral'
                WHEN w.health_score IS NOT NULL THEN 'at_risk'
           END AS health_band,
           c.scorecard_version,
           -- The first measure with the status's colour is the one to name in the reason.
           CASE
               {% for m in measures %}
               WHEN {{ activation_column(m.name) | quote }} = activation_status THEN format(
                   '{} = {} (green from {}, yellow from {})', $measure_{{ loop.index0 }}_name,
                   {{ shared.number(m.metric | quote) }}, {{ shared.number("$measure_%d_green" % loop.index0) }},
                   {{ shared.number("$measure_%d_yellow" % loop.index0) }})
               {% endfor %}
           END AS activation_detail
    FROM with_status w JOIN scorecard_segments c ON c.segment = w.segment
),
{% if band_overrides %}
with_cap AS (
    -- A band override makes the band worse, never better; an unbanded account stays unbanded.
    SELECT *, coalesce(list_position($bands::VARCHAR[], band_cap.band)
                       > list_position($bands::VARCHAR[], health_band), false) AS capped
    FROM with_band
),
{% endif %}
scores AS MATERIALIZED (
    -- The reason's health_band is the band before any cap: the source column, not this alias.
    SELECT snapshot_date, account_id, segment, health_score,
           {% if band_overrides %}CASE WHEN capped THEN band_cap.band ELSE health_band END AS {% endif %}health_band,
           CASE {% if band_overrides %}WHEN capped THEN 'override' {% endif %}WHEN in_onboarding THEN 'activation'
                ELSE 'score' END AS band_source,
           in_onboarding,
           CASE WHEN in_onboarding THEN activation_status END AS activation_status,
           {% for m in measures %}
           CASE WHEN in_onboarding THEN {{ activation_column(m.name) | quote }} END
               AS {{ activation_column(m.name) | quote }},
           {% endfor %}
           drag.component AS top_drag, missing_components,
           {% if band_overrides %}CASE WHEN capped THEN format('{} by override {}; otherwise ', band_cap.band,
                                                  band_cap.name) ELSE '' END || {% endif %}
           CASE
               WHEN in_onboarding THEN format(
                   'onboarding day {} of {}: activation {}, {}',
                   snapshot_date - customer_since + 1, $onboarding_days, activation_status, activation_detail)
               WHEN health_score IS NULL THEN 'not scored: every component''s metric is missing'
               WHEN drag IS NULL THEN format('{} {:.1f}/100: full points on every component',
                                             health_band, health_score)
               ELSE format('{} {:.1f}/100: biggest drag {} (-{:.1f} points; {} = {}{})',
                           health_band, health_score, drag.component, round(drag.lost, 1), drag.metric,
                           {{ shared.number("drag.value") }}, coalesce(' in ' || drag.bin, ''))
           END || CASE WHEN missing_components <> '' THEN '; missing: ' || missing_components ELSE '' END
               AS score_reason,
           {% for component in config.components %}{% set outer = loop %}
           {% for suffix, source in explanation_sources %}
           {{ explanation_column(component, suffix) | quote }},
           {% endfor %}
           {% endfor %}
           scorecard_version
    FROM {{ "with_cap" if band_overrides else "with_band" }}
),
known_scores AS (
    -- Each day's earlier scores: from this range, and before it from the table, if it exists.
    SELECT snapshot_date, account_id, health_score, health_band FROM scores
    {% if with_history %}
    UNION ALL
    SELECT snapshot_date, account_id, health_score, health_band FROM core.account_health
    WHERE snapshot_date BETWEEN $first_day::DATE - 28 AND $first_day::DATE - 1
    {% endif %}
)
SELECT s.*,
       week_ago.health_score AS previous_score_7d,
       round(s.health_score - week_ago.health_score, 1) AS score_delta_7d,
       month_ago.health_score AS previous_score_28d,
       round(s.health_score - month_ago.health_score, 1) AS score_delta_28d,
       yesterday.health_band AS previous_band,
       coalesce(s.health_band <> yesterday.health_band, false) AS band_changed
FROM scores s
LEFT JOIN known_scores week_ago
  ON week_ago.account_id = s.account_id AND week_ago.snapshot_date = s.snapshot_date - 7
LEFT JOIN known_scores month_ago
  ON month_ago.account_id = s.account_id AND month_ago.snapshot_date = s.snapshot_date - 28
LEFT JOIN known_scores yesterday
  ON yesterday.account_id = s.account_id AND yesterday.snapshot_date = s.snapshot_date - 1
