"""The warehouse resource's DuckDB limits: memory_limit and threads, from config or the environment."""

from __future__ import annotations

import dagster as dg

from health_pipeline.resources import default_resources
from health_pipeline.warehouse import Warehouse


def test_memory_limit_and_threads_reach_the_connection(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "w.duckdb"), memory_limit="512MB", threads=1)
    with warehouse.get_connection() as conn:
        threads, memory = conn.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit')"
        ).fetchall()[0]
    assert threads == 1
    assert memory == "488.2 MiB"  # DuckDB reports 512 MB in MiB


def test_unset_limits_leave_duckdb_defaults(tmp_path):
    assert Warehouse(database=str(tmp_path / "w.duckdb")).duckdb_settings == {}


def test_environment_sets_the_limits_as_env_vars(monkeypatch):
    monkeypatch.setenv("HEALTH_DUCKDB_MEMORY_LIMIT", "2GB")
    monkeypatch.setenv("HEALTH_DUCKDB_THREADS", "2")
    warehouse = default_resources()["warehouse"]
    assert warehouse.memory_limit == dg.EnvVar("HEALTH_DUCKDB_MEMORY_LIMIT")
    assert warehouse.threads == dg.EnvVar.int("HEALTH_DUCKDB_THREADS")
    monkeypatch.delenv("HEALTH_DUCKDB_MEMORY_LIMIT")
    monkeypatch.delenv("HEALTH_DUCKDB_THREADS")
    unset = default_resources()["warehouse"]
    assert unset.memory_limit is None and unset.threads is None
