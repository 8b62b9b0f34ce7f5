"""Stage e: score every non-churned account from its metrics, and explain the score.

Each account-day first picks its segment (the first segment rule that holds, else the
default), which picks its scorecard. Each component bins one metric into points; within a
group the points won are a share of the points possible, and the score is the weighted mean
of the groups' shares x 100. The scorecards are loaded into tables and joined to the metrics,
so scoring is one set-based query over any range of days. During onboarding the band comes
from activation measures instead. Trend columns compare each day with earlier scores.
"""

import dagster as dg
import duckdb

from health_pipeline.config import ACTIVATION_BANDS, BROAD_FOOTPRINT_CONTACTS, Settings
from health_pipeline.contract import EXPLANATION_SUFFIXES, activation_column, explanation_column
from health_pipeline.previews import score_preview
from health_pipeline.stages import stage_asset
from health_pipeline.warehouse import Warehouse, counts_by, date_range, quote, stage, table_exists, write_range

# attribute -> SQL over the account (a) and its metrics (m); digital_footprint as in config.digital_footprint
SEGMENT_ATTRIBUTE_SQL = {
    "plan": "a.plan",
    "vertical": "a.vertical",
    "arr": "a.arr",
    "contacts_total": "m.contacts_total",
    "digital_footprint": (
        "CASE WHEN m.contacts_total = 0 THEN 'none'"
        f" WHEN m.contacts_total < {BROAD_FOOTPRINT_CONTACTS} THEN 'light' ELSE 'broad' END"
    ),
}
_NUMERIC_ATTRIBUTES = {"arr", "contacts_total"}
_OPERATOR_SQL = {
    "in": "list_contains({value}, {attribute})",
    "not_in": "NOT list_contains({value}, {attribute})",
    "gte": "{attribute} >= {value}",
    "gt": "{attribute} > {value}",
    "lte": "{attribute} <= {value}",
    "lt": "{attribute} < {value}",
}


def _number(expr: str) -> str:
    """SQL text for a number in a sentence: up to three decimals, or 'missing'."""
    return f"coalesce(format('{{:.10g}}', round({expr}, 3)), 'missing')"


def load_scorecards(conn: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Write every segment's effective scorecard into temp tables the scoring query joins."""
    conn.execute("""
        CREATE OR REPLACE TEMP TABLE scorecard_segments (
            segment VARCHAR, healthy_from DOUBLE, neutral_from DOUBLE, scorecard_version VARCHAR);
        CREATE OR REPLACE TEMP TABLE scorecard_groups (segment VARCHAR, group_name VARCHAR, weight DOUBLE);
        CREATE OR REPLACE TEMP TABLE scorecard_components (
            segment VARCHAR, component VARCHAR, group_name VARCHAR, metric VARCHAR, missing VARCHAR,
            max_points DOUBLE);
        CREATE OR REPLACE TEMP TABLE scorecard_bins (
            segment VARCHAR, component VARCHAR, bin VARCHAR, lower DOUBLE, upper DOUBLE,
            lower_inclusive BOOLEAN, upper_inclusive BOOLEAN, points DOUBLE);
    """)
    for segment in settings.segments:
        card = segment.scorecard
        conn.execute(
            "INSERT INTO scorecard_segments VALUES (?, ?, ?, ?)",
            [segment.name, card.healthy_from, card.neutral_from, card.version],
        )
        conn.executemany(
            "INSERT INTO scorecard_groups VALUES (?, ?, ?)", [(segment.name, g, w) for g, w in card.groups]
        )
        conn.executemany(
            "INSERT INTO scorecard_components VALUES (?, ?, ?, ?, ?, ?)",
            [(segment.name, c.name, c.group, c.metric, c.missing, c.max_points) for c in card.components],
        )
        conn.executemany(
            "INSERT INTO scorecard_bins VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (segment.name, c.name, b.label, b.lower, b.upper, b.lower_inclusive, b.upper_inclusive, b.points)
                for c in card.components
                for b in c.bins
            ],
        )


def segment_sql(settings: Settings) -> str:
    """The CASE expression that picks each account-day's segment; rule values are parameters."""
    branches = []
    for i, segment in enumerate(settings.segments[:-1]):
        tests = []
        for j, condition in enumerate(segment.conditions):
            numeric = condition.attribute in _NUMERIC_ATTRIBUTES
            value = f"$segment_{i}_{j}::" + ("DOUBLE" if numeric else "VARCHAR")
            if condition.operator in ("in", "not_in"):
                value += "[]"
            attribute = SEGMENT_ATTRIBUTE_SQL[condition.attribute]
            attribute = f"CAST({attribute} AS DOUBLE)" if numeric else attribute
            tests.append("(" + _OPERATOR_SQL[condition.operator].format(value=value, attribute=attribute) + ")")
        branches.append(f"WHEN {' AND '.join(tests)} THEN $segment_{i}")
    if not branches:
        return "$default_segment"
    return "CASE " + " ".join(branches) + " ELSE $default_segment END"


def scores_sql(settings: Settings) -> str:
    """One row per non-churned account per day: segment, score, explanations, onboarding status."""
    onboarding = settings.onboarding
    metrics = tuple(dict.fromkeys(
        [c.metric for s in settings.segments for c in s.scorecard.components]
        + [m.metric for m in onboarding.measures]
    ))
    metric_columns = ", ".join(f"CAST(m.{quote(name)} AS DOUBLE) AS {quote(name)}" for name in metrics)
    explanations = ",\n".join(
        f"max({source}) FILTER (WHERE component = $component_{i}) AS {quote(explanation_column(c, suffix))}"
        for i, c in enumerate(settings.components)
        for suffix, source in zip(EXPLANATION_SUFFIXES, ("metric_value", "bin", "points", "points_possible"))
    )
    colours = {
        m.name: (
            f"CASE WHEN s.{quote(m.metric)} >= $measure_{i}_green THEN 'green'"
            f" WHEN s.{quote(m.metric)} >= $measure_{i}_yellow THEN 'yellow' ELSE 'red' END"
        )
        for i, m in enumerate(onboarding.measures)
    }
    colour_columns = ",\n".join(f"{sql} AS {quote(activation_column(name))}" for name, sql in colours.items())
    measure_colours = ", ".join(quote(activation_column(m.name)) for m in onboarding.measures)
    onboarding_only = ", ".join(
        f"CASE WHEN in_onboarding THEN {quote(activation_column(m.name))} END AS {quote(activation_column(m.name))}"
        for m in onboarding.measures
    )
    explanation_names = ", ".join(
        quote(explanation_column(c, suffix)) for c in settings.components for suffix in EXPLANATION_SUFFIXES
    )
    # The first measure with the status's colour is the one to name in the reason.
    worst_measure = " ".join(
        f"WHEN {quote(activation_column(m.name))} = activation_status THEN format("
        f"'{m.name} = {{}} (green from {{}}, yellow from {{}})', {_number(quote(m.metric))},"
        f" {_number(f'$measure_{i}_green')}, {_number(f'$measure_{i}_yellow')})"
        for i, m in enumerate(onboarding.measures)
    )
    activation_band = " ".join(f"WHEN '{colour}' THEN '{band}'" for colour, band in ACTIVATION_BANDS.items())
    return f"""
        WITH scored_accounts AS (
            -- Churned accounts are not scored.
            SELECT m.snapshot_date, m.account_id, a.customer_since, {segment_sql(settings)} AS segment,
                   {metric_columns}
            FROM core.account_metrics m JOIN raw.accounts a ON a.account_id = m.account_id
            WHERE m.snapshot_date BETWEEN $first_day AND $last_day
              AND a.status IS DISTINCT FROM 'churned'
        ),
        metric_values AS (
            SELECT snapshot_date, account_id, segment, metric, metric_value
            FROM scored_accounts
            UNPIVOT INCLUDE NULLS (metric_value FOR metric IN ({", ".join(quote(m) for m in metrics)}))
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
                   first({{'component': l.component, 'metric': l.metric, 'value': l.metric_value,
                           'bin': l.bin, 'lost': l.score_lost}} ORDER BY l.score_lost DESC, l.component)
                       FILTER (WHERE l.score_lost > 0) AS drag,
                   coalesce(string_agg(l.component, ',' ORDER BY l.component) FILTER (WHERE l.metric_value IS NULL), '')
                       AS missing_components,
                   {explanations}
            FROM component_losses l JOIN account_shares s USING (snapshot_date, account_id)
            GROUP BY l.snapshot_date, l.account_id
        ),
        with_activation AS (
            SELECT s.*, sc.* EXCLUDE (snapshot_date, account_id),
                   coalesce(s.snapshot_date - s.customer_since < $onboarding_days, false) AS in_onboarding,
                   {colour_columns}
            FROM scored_accounts s
            JOIN account_scores sc USING (snapshot_date, account_id)
        ),
        with_status AS (
            SELECT *,
                   CASE WHEN 'red' IN ({measure_colours}) THEN 'red'
                        WHEN 'yellow' IN ({measure_colours}) THEN 'yellow'
                        ELSE 'green'
                   END AS activation_status
            FROM with_activation
        ),
        with_band AS (
            SELECT w.*,
                   CASE WHEN w.in_onboarding THEN CASE w.activation_status {activation_band} END
                        WHEN w.health_score >= c.healthy_from THEN 'healthy'
                        WHEN w.health_score >= c.neutral_from THEN 'neutral'
                        WHEN w.health_score IS NOT NULL THEN 'at_risk'
                   END AS health_band,
                   c.scorecard_version,
                   CASE {worst_measure} END AS activation_detail
            FROM with_status w JOIN scorecard_segments c ON c.segment = w.segment
        )
        SELECT snapshot_date, account_id, segment, health_score, health_band,
               CASE WHEN in_onboarding THEN 'activation' ELSE 'score' END AS band_source,
               in_onboarding,
               CASE WHEN in_onboarding THEN activation_status END AS activation_status,
               {onboarding_only},
               drag.component AS top_drag, missing_components,
               CASE
                   WHEN in_onboarding THEN format(
                       'onboarding day {{}} of {{}}: activation {{}}, {{}}',
                       snapshot_date - customer_since + 1, $onboarding_days, activation_status, activation_detail)
                   WHEN health_score IS NULL THEN 'not scored: every component''s metric is missing'
                   WHEN drag IS NULL THEN format('{{}} {{:.1f}}/100: full points on every component',
                                                     health_band, health_score)
                   ELSE format('{{}} {{:.1f}}/100: biggest drag {{}} (-{{:.1f}} points; {{}} = {{}}{{}})',
                               health_band, health_score, drag.component, round(drag.lost, 1), drag.metric,
                               {_number("drag.value")}, coalesce(' in ' || drag.bin, ''))
               END || CASE WHEN missing_components <> '' THEN '; missing: ' || missing_components ELSE '' END
                   AS score_reason,
               {explanation_names},
               scorecard_version
        FROM with_band
    """


def scores_params(settings: Settings, first_day, last_day) -> dict:
    params = {
        "first_day": first_day,
        "last_day": last_day,
        "default_segment": settings.segments[-1].name,
        "onboarding_days": settings.onboarding.within_days,
        **{f"component_{i}": c for i, c in enumerate(settings.components)},
    }
    for i, segment in enumerate(settings.segments[:-1]):
        params[f"segment_{i}"] = segment.name
        for j, condition in enumerate(segment.conditions):
            value = condition.value
            params[f"segment_{i}_{j}"] = list(value) if isinstance(value, tuple) else value
    for i, measure in enumerate(settings.onboarding.measures):
        params[f"measure_{i}_green"] = measure.green
        params[f"measure_{i}_yellow"] = measure.yellow
    return params


def trend_sql(with_history: bool) -> str:
    """Add each day's earlier scores; days before the range come from the table, if it exists."""
    history = """
        UNION ALL
        SELECT snapshot_date, account_id, health_score, health_band FROM core.account_health
        WHERE snapshot_date BETWEEN $first_day::DATE - 28 AND $first_day::DATE - 1
    """ if with_history else ""
    return f"""
        WITH known_scores AS (
            SELECT snapshot_date, account_id, health_score, health_band FROM staged_scores
            {history}
        )
        SELECT s.*,
               week_ago.health_score AS previous_score_7d,
               round(s.health_score - week_ago.health_score, 1) AS score_delta_7d,
               month_ago.health_score AS previous_score_28d,
               round(s.health_score - month_ago.health_score, 1) AS score_delta_28d,
               yesterday.health_band AS previous_band,
               coalesce(s.health_band <> yesterday.health_band, false) AS band_changed
        FROM staged_scores s
        LEFT JOIN known_scores week_ago
          ON week_ago.account_id = s.account_id AND week_ago.snapshot_date = s.snapshot_date - 7
        LEFT JOIN known_scores month_ago
          ON month_ago.account_id = s.account_id AND month_ago.snapshot_date = s.snapshot_date - 28
        LEFT JOIN known_scores yesterday
          ON yesterday.account_id = s.account_id AND yesterday.snapshot_date = s.snapshot_date - 1
    """


def score_range(conn: duckdb.DuckDBPyConnection, settings: Settings, first_day, last_day) -> dict:
    """Score a range of days into core.account_health, trend columns included."""
    load_scorecards(conn, settings)
    stage(conn, "scores", scores_sql(settings), scores_params(settings, first_day, last_day))
    with_history = table_exists(conn, "core.account_health")
    return write_range(
        conn, "core.account_health", "snapshot_date", first_day, last_day,
        trend_sql(with_history), {"first_day": first_day} if with_history else None,
    )


def build_account_health(settings: Settings) -> dg.AssetsDefinition:
    @stage_asset(
        name="account_health",
        deps=["account_metrics"],
        kinds={"duckdb"},
        # Editing the scorecard changes this version, so the UI marks scores stale.
        code_version=settings.scoring_version,
    )
    def account_health(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        """One row per non-churned account per snapshot date D: its health score, band and why.

        segment names the scorecard used. health_score is 0-100 (the weighted share of points
        won x 100, one decimal); health_band is healthy, neutral or at_risk, from the score, or
        during onboarding from activation_status (band_source says which). For each component:
        `<component>_value`, `_bin`, `_points` and `_points_possible`; top_drag is the component
        that cost the most score points and score_reason says it in one line. Trend:
        previous_score_7d/28d, score_delta_7d/28d, previous_band (D-1) and band_changed.
        """
        first_day, last_day = date_range(context.partition_time_window)
        with warehouse.get_connection() as conn:
            meta = score_range(conn, settings, first_day, last_day)
            bands = counts_by(conn, "core.account_health", "health_band", first_day, last_day)
            meta.update({f"accounts_{band}": n for band, n in bands.items()})
            meta.update(score_preview(conn, last_day))
        return dg.MaterializeResult(metadata=meta)

    return account_health
