"""account_health: score each account that was a customer on the day, and explain the score.

Each account-day first picks its segment (the first segment rule that holds, else the
default), which picks its scorecard. Each component bins one metric into points; within a
group the points won are a share of the points possible, and the score is the weighted mean
of the groups' shares x 100. The scorecards are loaded into tables (scorecard_tables.sql) and
joined to the metrics, so scoring is one set-based statement over any range of days
(account_health.sql). During onboarding the band comes from activation measures instead.
Trend columns compare each day with earlier scores.
"""

import dagster as dg
import duckdb

from health_pipeline.assets import daily_asset, materialized, publish_range
from health_pipeline.checks import check_specs
from health_pipeline.contract import EXPLANATION_SUFFIXES
from health_pipeline.partitions import date_range
from health_pipeline.previews import markdown_table
from health_pipeline.resources import Warehouse
from health_pipeline.scorecard.model import (
    ACTIVATION_BANDS,
    BANDS,
    SEGMENT_ATTRIBUTES,
    BandOverride,
    HealthConfig,
)
from health_pipeline.sql import SqlFolder, table_exists

SQL = SqlFolder(__file__)
# The scoring columns each explanation suffix comes from.
EXPLANATION_SOURCES = tuple(zip(EXPLANATION_SUFFIXES, ("metric_value", "bin", "points", "points_possible")))
AT_RISK_SHOWN = 10


def scorecard_rows(config: HealthConfig) -> dict[str, list[dict]]:
    """Every segment's effective scorecard as rows of the scorecard_* tables, in their column order."""
    rows = {"scorecard_segments": [], "scorecard_groups": [], "scorecard_components": [], "scorecard_bins": []}
    for segment in config.segments:
        card = segment.scorecard
        rows["scorecard_segments"].append({"segment": segment.name, "healthy_from": card.healthy_from,
                                           "neutral_from": card.neutral_from, "version": card.version})
        rows["scorecard_groups"] += [{"segment": segment.name, "group": g, "weight": w} for g, w in card.groups]
        for c in card.components:
            rows["scorecard_components"].append({"segment": segment.name, "component": c.name, "group": c.group,
                                                 "metric": c.metric, "missing": c.missing, "max": c.max_points})
            rows["scorecard_bins"] += [
                {"segment": segment.name, "component": c.name, "bin": b.label, "lower": b.lower, "upper": b.upper,
                 "lower_inclusive": b.lower_inclusive, "upper_inclusive": b.upper_inclusive, "points": b.points}
                for b in c.bins
            ]
    return rows


def load_scorecards(conn: duckdb.DuckDBPyConnection, config: HealthConfig) -> None:
    """Create the scorecard_* tables the scoring joins, and fill them from the configuration."""
    SQL.run(conn, "scorecard_tables")
    for table, rows in scorecard_rows(config).items():
        conn.execute(f"INSERT INTO {table} SELECT unnest($rows, recursive := true)", {"rows": rows})


def account_health_sql(config: HealthConfig, with_history: bool) -> str:
    """The scoring statement; `with_history` reads days before the range from core.account_health."""
    return SQL.render(
        "account_health", config=config, with_history=with_history, explanation_sources=EXPLANATION_SOURCES,
        segment_attributes=SEGMENT_ATTRIBUTES, activation_bands=ACTIVATION_BANDS,
        band_overrides=worst_cap_first(config),
    )


def worst_cap_first(config: HealthConfig) -> list[BandOverride]:
    """The band overrides in the order the scorer tries them: the first that holds caps the band
    (scorecard.reference.band_cap), so the worst band first, then in file order."""
    return sorted(config.band_overrides, key=lambda o: -BANDS.index(o.band_at_most))


def account_health_params(config: HealthConfig, first_day, last_day) -> dict:
    """The statement's values: the range, the segment rules, component names, onboarding measures."""
    params = {
        "first_day": first_day,
        "last_day": last_day,
        "default_segment": config.segments[-1].name,
        "onboarding_days": config.onboarding.within_days,
        **{f"component_{i}": c for i, c in enumerate(config.components)},
    }
    segment_rules = config.segments[:-1]
    if any(c.attribute == "digital_footprint" for s in segment_rules for c in s.conditions):
        params["broad_footprint_contacts"] = config.broad_footprint_contacts
    for i, override in enumerate(worst_cap_first(config)):
        params[f"override_{i}"] = override.name
        params[f"override_{i}_band"] = override.band_at_most
        params["bands"] = list(BANDS)
        for j, condition in enumerate(override.conditions):
            value = condition.value
            params[f"override_{i}_{j}"] = list(value) if isinstance(value, tuple) else value
    for i, segment in enumerate(segment_rules):
        params[f"segment_{i}"] = segment.name
        for j, condition in enumerate(segment.conditions):
            value = condition.value
            params[f"segment_{i}_{j}"] = list(value) if isinstance(value, tuple) else value
    for i, measure in enumerate(config.onboarding.measures):
        params[f"measure_{i}_name"] = measure.name
        params[f"measure_{i}_green"] = measure.green
        params[f"measure_{i}_yellow"] = measure.yellow
    return params


def score_range(conn: duckdb.DuckDBPyConnection, config: HealthConfig, first_day, last_day):
    """Score a range of days into core.account_health, trend columns included, and audit it.
    Yields the check results; returns the metadata (`meta = yield from score_range(...)`)."""
    load_scorecards(conn, config)
    return (yield from publish_range(
        conn, config, "account_health", "core.account_health", "snapshot_date", first_day, last_day,
        account_health_sql(config, with_history=table_exists(conn, "core.account_health")),
        account_health_params(config, first_day, last_day), windowed=True,
        figures_by=("health_band", "accounts_"),
    ))


def most_at_risk(conn: duckdb.DuckDBPyConnection, snapshot_date, shown: int = AT_RISK_SHOWN) -> list[tuple]:
    """The `shown` accounts most at risk on `snapshot_date` (account_id, name, owner, arr, segment,
    health_score, health_band, band_source, score_reason): by band, worst first, then by score, then by ARR."""
    return SQL.run(conn, "most_at_risk", {"snapshot_date": snapshot_date, "shown": shown,
                                          "bands": list(BANDS)}).fetchall()


def score_preview(conn: duckdb.DuckDBPyConnection, snapshot_date) -> dict[str, dg.MetadataValue]:
    """The most at-risk accounts and the score distribution per band on `snapshot_date`."""
    at_risk = [row[:8] for row in most_at_risk(conn, snapshot_date)]
    bands = SQL.run(conn, "score_distribution", {"snapshot_date": snapshot_date}).fetchall()
    return {
        "most_at_risk": dg.MetadataValue.md(
            f"**The {len(at_risk)} accounts most at risk on {snapshot_date}** (by band, worst first, then by "
            "score, then by ARR; band_source `activation`: an onboarding account banded by its activation)\n\n"
            + markdown_table(["account_id", "account", "owner", "arr", "segment", "health_score", "health_band",
                              "band_source"], at_risk)
        ),
        "score_distribution": dg.MetadataValue.md(
            f"**Scores per band on {snapshot_date}** (an onboarding account's band comes from its activation, "
            "so its score can lie outside its band's cut-offs: `banded by activation` counts them)\n\n"
            + markdown_table(["band", "accounts", "% of accounts", "banded by activation", "lowest", "median",
                              "highest"], bands)
        ),
    }


def build_account_health(config: HealthConfig) -> dg.AssetsDefinition:
    @daily_asset(
        name="account_health",
        deps=["account_metrics", "account_history", "outcomes"],
        kinds={"duckdb"},
        # Editing the scorecard changes this version, so the UI marks scores stale.
        code_version=config.scoring_version,
        check_specs=check_specs(config, "account_health"),
    )
    def account_health(context: dg.AssetExecutionContext, warehouse: Warehouse):
        """One row per account that was a customer on snapshot date D (customer_since on or before D,
        no churn date on or before D; see docs/metrics.md): its health score, band and why.

        segment names the scorecard used. health_score is 0-100 (the weighted share of points
        won x 100, one decimal); health_band is healthy, neutral or at_risk, from the score, or
        during onboarding from activation_status (band_source says which). For each component:
        `<component>_value`, `_bin`, `_points` and `_points_possible`; top_drag is the component
        that cost the most score points and score_reason says it in one line. Trend:
        previous_score_7d/28d, score_delta_7d/28d, previous_band (D-1) and band_changed.
        """
        first_day, last_day = date_range(context.partition_time_window)
        with warehouse.get_connection() as conn:
            meta = yield from score_range(conn, config, first_day, last_day)
            meta.update(score_preview(conn, last_day))
        yield from materialized(context, meta)

    return account_health
