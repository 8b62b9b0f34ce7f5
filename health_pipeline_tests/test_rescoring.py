"""Tuning the scorecard marks only the scoring assets stale, and re-scoring leaves metrics untouched."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
import yaml
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.assets.score_backtest.asset import BACKTEST_ASSETS
from health_pipeline.definitions import build_assets
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.scorecard.parser import load_config
from health_pipeline.settings import DEFAULT_CONFIG_PATH
from health_pipeline_tests.conftest import Pipeline

SPEC = SampleSpec(accounts=8, days=40, seed=5)
FIRST, LAST = "2026-06-01", "2026-07-10"
RESCORED = ("2026-06-11", "2026-07-10")
SCORING = {"account_health", "sync_export", "band_changes"}
MEASURING = {*RAW_ACTIVITY_ASSETS, "daily_contact_activity", "contact_metrics", "account_metrics", "contact_usage"}
METRIC_TABLES = ("core.daily_contact_activity", "core.contact_metrics", "core.account_metrics")


def stale_assets(instance, settings, partition: str) -> set[str]:
    resolver = get_stale_status_resolver(instance, build_assets(settings))
    return {
        key for key in SCORING | MEASURING
        if resolver.get_status(dg.AssetKey(key), partition) != StaleStatus.FRESH
    }


@pytest.mark.slow
def test_tuning_a_threshold_marks_scores_stale_and_rescoring_keeps_metrics(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    pipeline = Pipeline(tmp_path, instance=instance, sparse=True)
    generate_sample(pipeline.raw_dir, SPEC)
    pipeline.materialize(FIRST, LAST)
    assert stale_assets(instance, pipeline.settings, "2026-06-20") == set()

    # The analyst lowers the usage_level thresholds.
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["scorecard"]["components"]["usage_level"]["bins"][1:3] = [
        {"range": "[1, 20)", "points": 1}, {"range": "[20, 200)", "points": 2}]
    tuned_path = tmp_path / "tuned.yaml"
    tuned_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    tuned = load_config(tuned_path)
    assert stale_assets(instance, tuned, "2026-06-20") == SCORING

    def metric_tables():
        return {t: pipeline.query(f"SELECT * FROM {t} ORDER BY ALL") for t in METRIC_TABLES}

    before = metric_tables()
    old_scores = pipeline.query("SELECT * FROM core.account_health ORDER BY ALL")
    rescore = Pipeline(tmp_path, settings=tuned, instance=instance, sparse=True)
    result = rescore.materialize(*RESCORED, selection=dg.AssetSelection.assets("account_health").downstream())
    materialized = {e.materialization.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    # The backtest re-reads the new scores; the alerts, the report and the PostgreSQL sync follow the exports.
    assert materialized == SCORING | set(BACKTEST_ASSETS) | {"alerts", "morning_report", "postgres_sync"}

    after = metric_tables()
    for table in METRIC_TABLES:
        pd.testing.assert_frame_equal(before[table], after[table], obj=table)
    assert stale_assets(instance, tuned, "2026-06-20") == set()
    assert stale_assets(instance, tuned, "2026-06-05") == SCORING  # outside the re-scored month

    versions = pipeline.query(
        "SELECT snapshot_date >= ? AS rescored, list(DISTINCT scorecard_version ORDER BY scorecard_version) AS v"
        " FROM export.account_health GROUP BY ALL ORDER BY ALL", [RESCORED[0]])
    old_versions = {s.scorecard.version for s in pipeline.settings.segments}
    new_versions = {s.scorecard.version for s in tuned.segments}
    assert set(versions.loc[~versions["rescored"], "v"].iloc[0]) <= old_versions
    assert set(versions.loc[versions["rescored"], "v"].iloc[0]) <= new_versions
    # Lower thresholds can only raise usage_level points, so no re-scored account lost score.
    new_scores = pipeline.query("SELECT * FROM core.account_health ORDER BY ALL")
    joined = old_scores.merge(new_scores, on=["snapshot_date", "account_id"], suffixes=("_old", "_new"))
    rescored = joined[joined["snapshot_date"] >= pd.Timestamp(RESCORED[0])]
    assert (rescored["usage_level_points_new"] >= rescored["usage_level_points_old"]).all()
    assert (rescored["usage_level_points_new"] > rescored["usage_level_points_old"]).any()
