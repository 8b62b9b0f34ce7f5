"""The benchmark harness at scale S: it runs end to end, and the seed baseline agrees with the pipeline.

No timing is asserted: the numbers depend on the machine. What must hold everywhere is that
every scenario produces its figures and that the seed approach, computed straight from the
raw events, gives exactly the pipeline's values for every shared column.
"""

from __future__ import annotations

import json

import duckdb
import pytest

from benchmarks.run import main
from benchmarks.tasks import verify


@pytest.mark.slow
def test_scale_s_runs_every_scenario_and_the_seed_baseline_agrees(tmp_path):
    out = tmp_path / "results"
    assert main(["--scale", "S", "--reps", "1", "--no-curve", "--out", str(out), "--work", str(tmp_path / "S")]) == 0

    report = json.loads((out / "S.json").read_text())
    scenarios = {s["number"]: s for s in report["scenarios"]}
    assert sorted(scenarios) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]  # 12, Spark's, is opt-in
    # Scenario 11 reads the same days as Heap's S3 delivery: a backfill of every day, then the next day.
    delivery = [s["figures"] for s in report["scenarios"] if s["number"] == 11]
    assert [figures["days"] for figures in delivery] == [29, 1]  # S's 30 days: all but the last, then the last
    assert all(f["ratio"] > 0 and 0 < f["avro_seconds"] and 0 < f["avro_share"] < 1 for f in delivery)

    comparison = scenarios[3]["figures"]["comparison"]
    for table in ("account_metrics", "contact_metrics"):
        assert comparison[table]["unmatched"] == 0, comparison[table]
        assert comparison[table]["differing"] == 0, comparison[table]
    # Every S account appears, and enough have usage that the comparison means something.
    assert comparison["account_metrics"]["rows"] == report["data"]["accounts"] == 25
    assert comparison["accounts_with_usage"] >= 10
    assert comparison["contact_metrics"]["rows"] > 500
    assert scenarios[3]["figures"]["values_identical"] is True

    # Each scenario measured what it claims, in positive seconds, events and bytes.
    assert scenarios[4]["figures"]["events"] > 100_000
    assert all(v > 0 for v in (scenarios[2]["figures"]["ratio"], scenarios[4]["figures"]["ratio"],
                               scenarios[5]["figures"]["backfill_peak_rss_mb"], scenarios[6]["figures"]["ratio"]))
    assert scenarios[7]["figures"]["backtest_seconds"] > 0  # S is too short for outcomes: M has them
    report_site = scenarios[8]["figures"]
    assert report_site["pages"] > report["data"]["accounts"] and report_site["size_mb"] > 0
    assert report_site["build_seconds"] > 0
    raw_stage = scenarios[10]["figures"]
    # The bare GROUP BY event_id saw the same events the raw stage read: every copy, duplicates included.
    assert raw_stage["days"] == 10 and raw_stage["events"] > 10_000 and raw_stage["ratio"] > 0
    table = (out / "S.md").read_text()
    assert "| 3 | Versus the seed approach |" in table and "DuckDB 2." in table and " cores " in table
    assert "| 8 | Morning report |" in table and "| 9 | PostgreSQL sync |" in table
    assert "| 10 | Raw stage vs exact deduplication |" in table
    sync = scenarios[9]["figures"]
    if not sync.get("skipped"):  # CI has PostgreSQL: the sync ran both ways
        assert sync["sync_day_seconds"] > 0 and sync["backfill_rows"]["account_health"] > 25

    # The comparison catches a single changed value.
    warehouse = tmp_path / "S" / "runs" / "history_full" / "warehouse.duckdb"
    day = scenarios[3]["figures"]["comparison"]["day"]
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("UPDATE core.account_metrics SET usage_28d = usage_28d + 1 "
                     "WHERE snapshot_date = ? AND account_id = 'A00001'", [day])
    changed = verify({"raw_dir": str(tmp_path / "S" / "raw"), "day": day, "warehouse": str(warehouse)})
    assert changed["account_metrics"]["differing"] == 1
    assert changed["account_metrics"]["differing_by_column"] == {"usage_28d": 1}
