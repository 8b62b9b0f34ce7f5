"""Each blocking check passes on a clean warehouse and fails, with the right figures, on a corrupted one.

The crafted data, for 2026-06-01 .. 2026-06-03 (the first partitions):
  accounts A1 (paying), A2 (trial), A3 (churned); users u1 -> A1, u2 -> A2, u3 -> A3
  sessions s1 (u1, 06-01), s2 (u2, 06-02), s3 (u1, 06-03) exported twice
  events   e1, e2 (u1, 06-01), e3 (u2, 06-02), e4 (u1, 06-03) exported twice
so after dedupe: 4 events, 3 sessions, 3 accounts x 3 days of metrics, 2 live accounts x 3 days of scores.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.checks import (
    build_checks,
    check_counts_non_negative,
    check_export_columns_match_contract,
    check_export_rows_match_scores,
    check_live_accounts_scored_once,
    check_raw_ids_and_times,
    check_raw_ids_unique,
    check_raw_required_columns,
    check_raw_rows_every_day,
    check_raw_times_in_partition,
    check_scores_within_0_and_100,
    check_shares_within_0_and_1,
)
from health_pipeline.contract import sync_table_columns
from health_pipeline.definitions import build_assets
from health_pipeline.partitions import partition_range_tags
from health_pipeline.resources import ExportTarget, RawSource
from health_pipeline.scorecard.parser import load_config
from health_pipeline_tests.conftest import Pipeline, RawData

FIRST, LAST = dt.date(2026, 6, 1), dt.date(2026, 6, 3)
CONTRACT = sync_table_columns(load_config())


def crafted() -> RawData:
    data = RawData()
    account = lambda aid, status: dict(  # noqa: E731
        account_id=aid, name=f"{aid} Co", owner="Ana", plan="growth", arr=1000.0, vertical="saas",
        customer_since="2025-01-01", status=status)
    data.accounts = [account("A1", "paying"), account("A2", "trial"), account("A3", "churned")]
    data.users = [dict(user_id=f"u{i}", identity=f"u{i}@a{i}.com", joindate="2026-01-01", account_id=f"A{i}",
                       role="analyst") for i in (1, 2, 3)]
    data.sessions = [
        dict(session_id="s1", user_id="u1", time="2026-06-01 09:00:00"),
        dict(session_id="s2", user_id="u2", time="2026-06-02 10:00:00"),
        dict(session_id="s3", user_id="u1", time="2026-06-03 11:00:00"),
        dict(session_id="s3", user_id="u1", time="2026-06-03 11:00:00"),
    ]
    event = lambda eid, uid, sid, time, name="run_query": dict(  # noqa: E731
        event_id=eid, user_id=uid, session_id=sid, time=time, event_table_name=name)
    data.events = [
        event("e1", "u1", "s1", "2026-06-01 09:05:00"),
        event("e2", "u1", "s1", "2026-06-01 09:06:00", "save_report"),
        event("e3", "u2", "s2", "2026-06-02 10:01:00"),
        event("e4", "u1", "s3", "2026-06-03 11:01:00"),
        event("e4", "u1", "s3", "2026-06-03 11:01:00"),
    ]
    return data


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Pipeline:
    pipeline = Pipeline(tmp_path_factory.mktemp("checks"))
    crafted().write(pipeline.raw_dir)
    pipeline.materialize(FIRST, LAST)
    return pipeline


@pytest.fixture
def warehouse(built: Pipeline, tmp_path: Path):
    """A private copy of the built warehouse and sync files, open for writing (to corrupt it)."""
    shutil.copy(built.root / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    shutil.copytree(built.export_dir, tmp_path / "exports")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        yield conn


def figures(result: dg.AssetCheckResult) -> dict:
    return {key: getattr(value, "value", value) for key, value in result.metadata.items()}


def test_required_columns(warehouse):
    result = check_raw_required_columns(warehouse, FIRST, LAST)
    assert result.passed and figures(result) == {"columns_required": 10, "columns_missing": 0, "missing": "none"}

    warehouse.execute("ALTER TABLE raw.sessions DROP COLUMN user_id")
    result = check_raw_required_columns(warehouse, FIRST, LAST)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert figures(result) == {"columns_required": 10, "columns_missing": 1, "missing": "raw.sessions.user_id"}


def test_ids_and_times_not_null(warehouse):
    clean = {"events_rows": 4, "events_null_event_id": 0, "events_null_user_id": 0, "events_null_time": 0,
             "sessions_rows": 3, "sessions_null_session_id": 0, "sessions_null_user_id": 0, "sessions_null_time": 0}
    result = check_raw_ids_and_times(warehouse, FIRST, LAST)
    assert result.passed and figures(result) == clean

    warehouse.execute("UPDATE raw.events SET user_id = NULL WHERE event_id = 'e3'")
    warehouse.execute("UPDATE raw.sessions SET time = NULL WHERE session_id = 's2'")
    # a row without a date belongs to no partition, and every range sees it
    warehouse.execute("UPDATE raw.events SET activity_date = NULL, time = NULL WHERE event_id = 'e1'")
    result = check_raw_ids_and_times(warehouse, LAST, LAST)
    assert not result.passed
    assert figures(result) == {**clean, "events_rows": 2, "events_null_time": 1,  # e4, and e1 with no date
                               "sessions_rows": 1}  # only s3 is on 06-03
    result = check_raw_ids_and_times(warehouse, FIRST, LAST)
    assert figures(result) == {**clean, "events_null_user_id": 1, "events_null_time": 1, "sessions_null_time": 1}


def test_ids_unique_after_dedupe(warehouse):
    result = check_raw_ids_unique(warehouse, FIRST, LAST)
    assert result.passed
    assert figures(result) == {"events_ids": 4, "events_duplicate_ids": 0,
                               "sessions_ids": 3, "sessions_duplicate_ids": 0}

    warehouse.execute("INSERT INTO raw.events SELECT * FROM raw.events WHERE event_id = 'e1'")
    result = check_raw_ids_unique(warehouse, FIRST, LAST)
    assert not result.passed
    assert figures(result) == {"events_ids": 5, "events_duplicate_ids": 1,
                               "sessions_ids": 3, "sessions_duplicate_ids": 0}
    assert check_raw_ids_unique(warehouse, dt.date(2026, 6, 2), LAST).passed  # e1 is on 06-01


def test_times_inside_their_partition(warehouse):
    result = check_raw_times_in_partition(warehouse, FIRST, LAST)
    assert result.passed
    assert figures(result) == {
        "events_outside_their_day": 0, "events_earliest": "2026-06-01 09:05:00", "events_latest": "2026-06-03 11:01:00",
        "sessions_outside_their_day": 0, "sessions_earliest": "2026-06-01 09:00:00",
        "sessions_latest": "2026-06-03 11:00:00", "partitions": "2026-06-01 .. 2026-06-03 (UTC)",
    }

    warehouse.execute("UPDATE raw.events SET time = TIMESTAMP '2026-06-04 00:30:00' WHERE event_id = 'e4'")
    result = check_raw_times_in_partition(warehouse, FIRST, LAST)
    assert not result.passed
    assert figures(result)["events_outside_their_day"] == 1
    assert figures(result)["events_latest"] == "2026-06-04 00:30:00"


def test_events_every_day_warns_in_the_first_week_of_history_and_fails_after_it(warehouse):
    result = check_raw_rows_every_day(warehouse, FIRST, LAST, history_start=FIRST)
    assert result.passed
    assert figures(result) == {"days_checked": 3, "days_without_events": 0, "empty_days": "none",
                               "fewest_events_in_a_day": 1, "events": 4,
                               "first_days_of_history": "2026-06-01 .. 2026-06-07"}

    warehouse.execute("DELETE FROM raw.events WHERE activity_date = '2026-06-02'")
    early = check_raw_rows_every_day(warehouse, FIRST, LAST, history_start=FIRST)
    assert not early.passed and early.severity == dg.AssetCheckSeverity.WARN
    assert figures(early) == {"days_checked": 3, "days_without_events": 1, "empty_days": "2026-06-02",
                              "fewest_events_in_a_day": 0, "events": 3,
                              "first_days_of_history": "2026-06-01 .. 2026-06-07"}
    # With history from 2026-05-20, the first week ends 05-26 and a missing 06-02 is an error.
    late = check_raw_rows_every_day(warehouse, FIRST, LAST, history_start=dt.date(2026, 5, 20))
    assert not late.passed and late.severity == dg.AssetCheckSeverity.ERROR
    assert figures(late)["first_days_of_history"] == "2026-05-20 .. 2026-05-26"
    assert late.description == "1 day(s) after 2026-05-26 have no events"


@pytest.mark.parametrize(
    ("table", "rows", "counts"), [("core.contact_metrics", 9, 10), ("core.account_metrics", 9, 15)]
)
def test_counts_non_negative(warehouse, table, rows, counts):
    result = check_counts_non_negative(warehouse, FIRST, LAST, table=table)
    assert result.passed
    assert figures(result) == {"rows_checked": rows, "counts_checked": counts, "negative_values": 0,
                               "columns_with_negatives": "none"}

    warehouse.execute(f"UPDATE {table} SET usage_28d = -5 WHERE snapshot_date = '2026-06-02'")
    result = check_counts_non_negative(warehouse, FIRST, LAST, table=table)
    assert not result.passed
    assert figures(result) == {"rows_checked": rows, "counts_checked": counts, "negative_values": 3,
                               "columns_with_negatives": "usage_28d (3)"}


def test_shares_within_0_and_1(warehouse):
    result = check_shares_within_0_and_1(warehouse, FIRST, LAST)
    assert result.passed
    # A2's one contact has no usage on 06-01 (breadth 0), A1's has (1); A3 never does (0).
    # top-user share is 1 wherever there is usage, and null (undefined) where there is none.
    assert figures(result) == {"breadth_28d_outside_0_1": 0, "breadth_28d_min": 0.0, "breadth_28d_max": 1.0,
                               "top_user_share_28d_outside_0_1": 0, "top_user_share_28d_min": 1.0,
                               "top_user_share_28d_max": 1.0}

    warehouse.execute("UPDATE core.account_metrics SET breadth_28d = 1.5"
                      " WHERE account_id = 'A1' AND snapshot_date = '2026-06-02'")
    result = check_shares_within_0_and_1(warehouse, FIRST, LAST)
    assert not result.passed
    assert figures(result)["breadth_28d_outside_0_1"] == 1 and figures(result)["breadth_28d_max"] == 1.5


def test_live_accounts_scored_once(warehouse):
    clean = {"scores_expected": 6, "scores_found": 6, "accounts_days_missing": 0,
             "accounts_days_scored_twice_or_more": 0, "churned_or_unknown_accounts_scored": 0,
             "missing_examples": "none"}
    result = check_live_accounts_scored_once(warehouse, FIRST, LAST)
    assert result.passed and figures(result) == clean

    warehouse.execute("DELETE FROM core.account_health WHERE account_id = 'A2' AND snapshot_date = '2026-06-03'")
    warehouse.execute("INSERT INTO core.account_health SELECT * FROM core.account_health"
                      " WHERE account_id = 'A1' AND snapshot_date = '2026-06-01'")
    warehouse.execute("INSERT INTO core.account_health SELECT * REPLACE ('A3' AS account_id) FROM core.account_health"
                      " WHERE account_id = 'A1' AND snapshot_date = '2026-06-02'")
    result = check_live_accounts_scored_once(warehouse, FIRST, LAST)
    assert not result.passed
    assert figures(result) == {"scores_expected": 6, "scores_found": 7, "accounts_days_missing": 1,
                               "accounts_days_scored_twice_or_more": 1, "churned_or_unknown_accounts_scored": 1,
                               "missing_examples": "A2 on 2026-06-03"}


def test_scores_within_0_and_100(warehouse):
    result = check_scores_within_0_and_100(warehouse, FIRST, LAST)
    assert result.passed
    assert {k: v for k, v in figures(result).items() if not k.endswith("_score")} == {
        "scores_checked": 6, "null_scores": 0, "scores_outside_0_100": 0}

    warehouse.execute("UPDATE core.account_health SET health_score = 101"
                      " WHERE account_id = 'A1' AND snapshot_date = '2026-06-01'")
    warehouse.execute("UPDATE core.account_health SET health_score = NULL"
                      " WHERE account_id = 'A2' AND snapshot_date = '2026-06-01'")
    result = check_scores_within_0_and_100(warehouse, FIRST, LAST)
    assert not result.passed
    found = figures(result)
    assert (found["null_scores"], found["scores_outside_0_100"], found["highest_score"]) == (1, 1, 101.0)


def test_export_rows_match_scored_accounts(warehouse, tmp_path):
    exports = tmp_path / "exports"
    result = check_export_rows_match_scores(warehouse, FIRST, LAST, exports)
    assert result.passed
    assert figures(result) == {"scored_rows": 6, "sync_table_rows": 6, "sync_file_rows": 6, "days_without_a_file": 0,
                               "days_mismatched": 0, "mismatched_days": "none"}

    warehouse.execute("DELETE FROM export.account_health WHERE account_id = 'A2' AND snapshot_date = '2026-06-02'")
    (exports / "account_health" / "snapshot_date=2026-06-03.parquet").unlink()
    result = check_export_rows_match_scores(warehouse, FIRST, LAST, exports)
    assert not result.passed
    assert figures(result) == {"scored_rows": 6, "sync_table_rows": 5, "sync_file_rows": 4, "days_without_a_file": 1,
                               "days_mismatched": 2, "mismatched_days": "2026-06-02, 2026-06-03"}


def test_export_columns_match_contract(warehouse, tmp_path):
    exports = tmp_path / "exports"
    clean = {
        "columns_documented": len(CONTRACT), "sync_table_missing": "none", "sync_table_unexpected": "none",
        "sync_table_in_documented_order": True, "files_checked": 3, "files_not_matching": 0,
        "files_missing": "none", "files_unexpected": "none", "first_file_not_matching": "none",
    }
    result = check_export_columns_match_contract(warehouse, FIRST, LAST, exports, contract=CONTRACT)
    assert result.passed and figures(result) == clean

    warehouse.execute("ALTER TABLE export.account_health ADD COLUMN legacy_score DOUBLE")
    warehouse.execute(
        "COPY (SELECT * EXCLUDE (owner) FROM export.account_health WHERE snapshot_date = '2026-06-02') TO ?",
        [str(exports / "account_health" / "snapshot_date=2026-06-02.parquet")],
    )
    result = check_export_columns_match_contract(warehouse, FIRST, LAST, exports, contract=CONTRACT)
    assert not result.passed
    assert figures(result) == {
        **clean, "sync_table_unexpected": "legacy_score", "sync_table_in_documented_order": False,
        "files_not_matching": 1, "files_missing": "owner", "files_unexpected": "legacy_score",
        "first_file_not_matching": "snapshot_date=2026-06-02.parquet",
    }


def test_export_columns_in_another_order_fail(warehouse, tmp_path):
    exports = tmp_path / "exports"
    warehouse.execute(
        "COPY (SELECT owner, * EXCLUDE (owner) FROM export.account_health WHERE snapshot_date = '2026-06-03') TO ?",
        [str(exports / "account_health" / "snapshot_date=2026-06-03.parquet")],
    )
    result = check_export_columns_match_contract(warehouse, FIRST, LAST, exports, contract=CONTRACT)
    assert not result.passed
    found = figures(result)
    assert (found["files_not_matching"], found["files_missing"], found["files_unexpected"]) == (1, "none", "none")


def test_a_failing_blocking_check_stops_the_stages_after_it(tmp_path):
    """Events stop after 06-08 (past the first week of history): the raw check fails with an
    error, and nothing downstream of raw_activity runs, so no sync file is written."""
    pipeline = Pipeline(tmp_path)
    data = crafted()
    data.sessions = [dict(session_id="s1", user_id="u1", time="2026-06-08 09:00:00")]
    data.events = [dict(event_id="e1", user_id="u1", session_id="s1", time="2026-06-08 09:05:00",
                        event_table_name="run_query")]
    data.write(pipeline.raw_dir)
    settings = load_config()
    result = dg.materialize(
        [*build_assets(settings), *build_checks(settings)],
        resources={"warehouse": pipeline.warehouse, "raw_source": RawSource(raw_dir=str(pipeline.raw_dir)),
                   "export_target": ExportTarget(export_dir=str(pipeline.export_dir))},
        tags=partition_range_tags(dt.date(2026, 6, 8), dt.date(2026, 6, 9)),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = evaluations.pop("events_every_day")
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["empty_days"].value == "2026-06-09"
    assert all(e.passed for e in evaluations.values())  # the other raw checks
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == set(RAW_ACTIVITY_ASSETS)
    assert not pipeline.export_dir.exists()


def test_the_code_location_has_every_check_blocking_partitioned_and_in_the_warehouse_pool():
    from health_pipeline.definitions import defs
    from health_pipeline.partitions import daily_partitions
    from health_pipeline.resources import Warehouse

    checks = {(spec.asset_key.to_user_string(), spec.name): (spec, c.op.pool)
              for c in defs.asset_checks for spec in c.check_specs}
    assert sorted(checks) == [
        ("account_health", "live_accounts_scored_once"), ("account_health", "scores_within_0_and_100"),
        ("account_metrics", "counts_non_negative"), ("account_metrics", "shares_within_0_and_1"),
        ("contact_metrics", "counts_non_negative"),
        ("raw_events", "events_every_day"), ("raw_events", "ids_and_times_not_null"),
        ("raw_events", "ids_unique_after_dedupe"), ("raw_events", "required_columns_present"),
        ("raw_events", "times_inside_their_partition"),
        ("sync_export", "columns_match_contract"), ("sync_export", "rows_match_scored_accounts"),
    ]
    for key, (spec, pool) in checks.items():
        assert spec.blocking and spec.partitions_def == daily_partitions and pool == Warehouse.POOL, key
        assert spec.description, key
    # the job that the schedule and the UI run includes every check
    # one step per checked asset
    assert len(defs.resolve_job_def("health_job").graph.nodes) == len(defs.assets) + 5
