"""The fused extraction computes what the pipeline computed before it, value for value.

Every table of the warehouse (raw, core and export, computed_at aside) after a full run of the
pinned sample and of the benchmarks' scale S has the digest that the implementation before it
recorded in data/table_digests.json (table_digests.py); the scored tables were recorded again when the
default scorecard gained the CSM pulse component. A change that alters any value, row count
or recorded column of any table fails here, with the table named; a column added since is not
compared.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest

from benchmarks.data import SCALES, raw_data
from health_pipeline.assets.account_metrics import asset as account_metrics_asset
from health_pipeline.assets.contact_metrics import asset as contact_metrics_asset
from health_pipeline.assets.raw_activity import asset as raw_activity_asset
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline_tests.conftest import Pipeline
from health_pipeline_tests.table_digests import table_digests

RECORDED = json.loads((Path(__file__).parent / "data" / "table_digests.json").read_text())["datasets"]
DATASETS = {"sample": SampleSpec(), "S": SCALES["S"].spec()}
# The stages that cut a range into batches of days by their batch plans, and the metadata key
# that counts their batches. Batches of a week must not change a value either.
BATCHES = {"raw_events": "events_batches", "contact_metrics": "batches", "account_metrics": "batches"}
PLANNED_IN = (raw_activity_asset, contact_metrics_asset, account_metrics_asset)


def weekly_batches(conn, first_day: dt.date, last_day: dt.date, bytes_per_day: int, why: str) -> dict:
    batches = -(-((last_day - first_day).days + 1) // 7)
    return {"batch_days": 7, "batches": batches, "batch_plan": f"{batches} batches of up to 7 days (test)"}


@pytest.mark.slow
@pytest.mark.parametrize("name, weekly", [("sample", False), ("S", False), ("sample", True)],
                         ids=["sample", "S", "sample in weekly batches"])
def test_every_table_holds_what_the_implementation_before_the_fusion_computed(tmp_path, monkeypatch, name, weekly):
    spec = DATASETS[name]
    if weekly:
        for module in PLANNED_IN:
            monkeypatch.setattr(module, "plan_batches", weekly_batches)
    pipeline = Pipeline(tmp_path)
    if name == "sample":
        generate_sample(pipeline.raw_dir, spec)
    else:
        raw_data(pipeline.raw_dir, spec, log=lambda *_: None)  # one parquet file a day, as the benchmarks read
    result = pipeline.materialize(spec.start, spec.end)
    if weekly:
        batches = {event.asset_key.to_user_string(): event.materialization.metadata[BATCHES[asset]].value
                   for event in result.get_asset_materialization_events()
                   if (asset := event.asset_key.to_user_string()) in BATCHES
                   and BATCHES[asset] in event.materialization.metadata}
        assert sorted(batches) == sorted(BATCHES) and min(batches.values()) > 1, batches
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        digests = table_digests(conn, recorded=RECORDED[name])
    changed = {table: (recorded["rows"], digests[table]["rows"])
               for table, recorded in RECORDED[name].items() if digests[table] != recorded}
    assert not changed, f"tables that differ (rows before, rows now): {changed}"
