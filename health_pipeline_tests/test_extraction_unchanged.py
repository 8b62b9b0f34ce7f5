"""The fused extraction computes what the pipeline computed before it, value for value.

Every table of the warehouse (raw, core and export, computed_at aside) after a full run of the
pinned sample and of the benchmarks' scale S has the digest that the implementation before it
recorded in data/table_digests.json (table_digests.py). A change that alters any value, row count
or column of any table fails here, with the table named.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from benchmarks.data import SCALES, raw_data
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline_tests.conftest import Pipeline
from health_pipeline_tests.table_digests import table_digests

RECORDED = json.loads((Path(__file__).parent / "data" / "table_digests.json").read_text())["datasets"]
DATASETS = {"sample": SampleSpec(), "S": SCALES["S"].spec()}


@pytest.mark.slow
@pytest.mark.parametrize("name", DATASETS)
def test_every_table_holds_what_the_implementation_before_the_fusion_computed(tmp_path, name):
    spec = DATASETS[name]
    pipeline = Pipeline(tmp_path)
    if name == "sample":
        generate_sample(pipeline.raw_dir, spec)
    else:
        raw_data(pipeline.raw_dir, spec, log=lambda *_: None)  # one parquet file a day, as the benchmarks read
    pipeline.materialize(spec.start, spec.end)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        digests = table_digests(conn)
    changed = {table: (recorded["rows"], digests[table]["rows"])
               for table, recorded in RECORDED[name].items() if digests[table] != recorded}
    assert not changed, f"tables that differ (rows before, rows now): {changed}"
