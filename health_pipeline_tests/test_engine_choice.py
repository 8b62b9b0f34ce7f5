"""Choosing the event stage's engine (health_pipeline.engines): HEALTH_ENGINE reaches the resource
as an EnvVar, DuckDB runs never start Spark, and a warehouse built by one engine is refused by the
other in one line, before anything is read or written. No JVM is needed here."""

from __future__ import annotations

import dagster as dg
import pytest

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.engines import EventEngine
from health_pipeline.resources import default_resources
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline_tests.conftest import Pipeline

SPEC = SampleSpec(accounts=3, days=2, seed=5)


def test_the_engine_is_a_resource_setting_read_from_the_environment(monkeypatch, tmp_path):
    assert not default_resources()["engine"].on_spark  # DuckDB unless chosen
    monkeypatch.setenv("HEALTH_ENGINE", "spark")
    monkeypatch.setenv("HEALTH_SPARK_REMOTE", "sc://spark.example:15002")
    monkeypatch.setenv("HEALTH_LAKE_DIR", str(tmp_path / "lake"))
    engine = default_resources()["engine"]
    assert engine.name == dg.EnvVar("HEALTH_ENGINE") and engine.spark_remote == dg.EnvVar("HEALTH_SPARK_REMOTE")
    assert engine.lake_dir == dg.EnvVar("HEALTH_LAKE_DIR")
    assert EventEngine(name=" Spark ").on_spark


def test_a_duckdb_run_never_starts_spark(monkeypatch, tmp_path):
    def refuse(remote):
        raise AssertionError("a DuckDB run started Spark")

    monkeypatch.setattr("health_pipeline.engines.spark.connect", refuse)
    pipeline = Pipeline(tmp_path)
    generate_sample(pipeline.raw_dir, SPEC)
    pipeline.materialize(SPEC.start, SPEC.end, selection=list(RAW_ACTIVITY_ASSETS))


@pytest.mark.parametrize("built_by, run_by, says", [
    ("duckdb", "spark", "HEALTH_ENGINE=spark, but the warehouse holds the daily fact and the event ledger that "
                        "DuckDB built"),
    ("spark", "duckdb", "the warehouse reads its daily fact from the lake the Spark engine keeps"),
])
def test_a_warehouse_built_by_the_other_engine_is_refused_in_one_line(tmp_path, built_by, run_by, says):
    pipeline = Pipeline(tmp_path)
    generate_sample(pipeline.raw_dir, SPEC)
    if built_by == "duckdb":
        pipeline.materialize(SPEC.start, SPEC.end, selection=list(RAW_ACTIVITY_ASSETS))
    else:  # what the Spark engine leaves: the fact as a view of the lake
        import duckdb

        with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
            conn.execute("CREATE SCHEMA core")
            conn.execute("CREATE VIEW core.daily_contact_activity AS SELECT DATE '2026-06-01' AS activity_date")
    pipeline.engine = EventEngine(name=run_by, lake_dir=str(tmp_path / "lake"))
    cls, message = pipeline.failure(SPEC.start, SPEC.end)
    assert cls == "EngineMismatch" and message.startswith(says) and "\n" not in message
