"""How the pipeline is operated: the repo's Dagster instance, the concurrency pool, the daily schedule."""

from __future__ import annotations

import dagster as dg
import pytest

from health_pipeline import DATA_DIR
from health_pipeline.definitions import defs
from health_pipeline.warehouse import Warehouse

DAGSTER_YAML = DATA_DIR / "dagster_home" / "dagster.yaml"


@pytest.fixture
def repo_instance(tmp_path, monkeypatch):
    """An instance configured by the repo's dagster.yaml, in a scratch DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML.read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_repo_instance_persists_runs_and_limits_the_warehouse_pool_to_one(repo_instance, tmp_path):
    assert repo_instance.is_persistent
    assert repo_instance.root_directory == str(tmp_path / "dagster_home")
    pools = repo_instance.event_log_storage.get_pool_config()
    assert (pools.pool_granularity.value, pools.default_pool_limit) == ("op", 1)
    # Queued runs whose first step would wait for the pool stay in the queue.
    assert repo_instance.run_coordinator.get_run_queue_config().should_block_op_concurrency_limited_runs


def test_every_step_that_opens_the_warehouse_is_in_its_pool():
    job = defs.resolve_job_def("health_job")
    pools = {node.name: node.definition.pool for node in job.graph.nodes}
    assert pools and set(pools.values()) == {Warehouse.POOL}, pools
