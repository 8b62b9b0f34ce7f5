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
import pandas as pd
import pytest

from health_pipeline.checks import (
    check_activity_every_day,
    check_export_columns_match_contract,
    check_export_rows_match_scores,
    check_live_accounts_scored_once,
    check_raw_ids_and_times,
    check_raw_ids_unique,
    check_raw_required_columns,
    check_raw_times_in_partition,
    check_scores_within_0_and_100,
    check_shares_within_0_and_1,
)
from health_pipeline.contract import sync_table_columns
from health_pipeline.scorecard.parser import load_config
from health_pipeline_tests.conftest import Pipeline, RawData, sync_table

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
    assert result.passed and figures(result) == {"columns_required": 8, "columns_missing": 0, "missing": "none"}

    warehouse.execute("ALTER TABLE raw.sessions DROP COLUMN user_id")
    result = check_raw_required_columns(warehouse, FIRST, LAST)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert figures(result) == {"columns_required": 8, "columns_missing": 1, "missing": "raw.sessions.user_id"}


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
    assert figures(result) == {"events_ids": 4, "events_duplicate_ids": 0, "events_ids_also_on_other_days": 0,
                               "sessions_ids": 3, "sessions_duplicate_ids": 0, "sessions_ids_also_on_other_days": 0}

    warehouse.execute("INSERT INTO raw.events SELECT * FROM raw.events WHERE event_id = 'e1'")
    result = check_raw_ids_unique(warehouse, FIRST, LAST)
    assert not result.passed
    assert figures(result) == {"events_ids": 5, "events_duplicate_ids": 1, "events_ids_also_on_other_days": 0,
                               "sessions_ids": 3, "sessions_duplicate_ids": 0, "sessions_ids_also_on_other_days": 0}
    assert check_raw_ids_unique(warehouse, dt.date(2026, 6, 2), LAST).passed  # e1 is on 06-01

    # The same id stored again on a day outside the range checked fails it too.
    warehouse.execute("DELETE FROM raw.events WHERE event_id = 'e1'")
    warehouse.execute("INSERT INTO raw.events BY NAME SELECT * REPLACE (DATE '2026-06-05' AS activity_date, "
                      "TIMESTAMP '2026-06-05 10:00:00' AS time) FROM raw.events WHERE event_id = 'e3'")
    result = check_raw_ids_unique(warehouse, FIRST, LAST)
    assert not result.passed and figures(result)["events_ids_also_on_other_days"] == 1

    # A row without a date is checked with every range. An undated copy of e3 adds no row outside
    # the range (e3's copy on 06-05 is counted once, not once per copy inside), and an undated e9
    # with a copy on 06-05 adds that copy.
    def copy(event_id: str, as_id: str, day: str) -> None:  # of its copy inside the range
        warehouse.execute(f"INSERT INTO raw.events BY NAME SELECT * REPLACE ('{as_id}' AS event_id, {day} AS "
                          f"activity_date) FROM raw.events WHERE event_id = '{event_id}' AND activity_date <= $last",
                          {"last": LAST})

    copy("e3", "e3", "NULL")
    assert figures(check_raw_ids_unique(warehouse, FIRST, LAST))["events_ids_also_on_other_days"] == 1
    copy("e4", "e9", "NULL")
    copy("e4", "e9", "DATE '2026-06-05'")
    assert figures(check_raw_ids_unique(warehouse, FIRST, LAST))["events_ids_also_on_other_days"] == 2


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


def test_a_day_without_events_or_sessions_fails_from_the_first_day_unless_declared_a_known_gap(warehouse):
    result = check_activity_every_day(warehouse, FIRST, LAST)
    assert result.passed
    assert figures(result) == {"days_checked": 3, "days_missing_activity": 0, "missing_days": "none",
                               "known_gaps_in_range": "none", "fewest_events_in_a_day": 1,
                               "fewest_sessions_in_a_day": 1}

    # The first day of history is no exception: a missing day is an error at once.
    warehouse.execute("DELETE FROM raw.events WHERE activity_date = '2026-06-01'")
    warehouse.execute("DELETE FROM raw.sessions WHERE activity_date = '2026-06-02'")
    missing = check_activity_every_day(warehouse, FIRST, LAST)
    assert not missing.passed and missing.severity == dg.AssetCheckSeverity.ERROR
    assert figures(missing)["missing_days"] == "2026-06-01 (no events), 2026-06-02 (no sessions)"
    assert missing.description.startswith("2 day(s) have no raw events or sessions")

    declared = check_activity_every_day(warehouse, FIRST, LAST, known_gaps=(FIRST, dt.date(2026, 6, 2)))
    assert declared.passed
    assert figures(declared)["known_gaps_in_range"] == "2026-06-01, 2026-06-02"


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


@pytest.mark.slow
def test_a_failed_audit_publishes_nothing_and_stops_the_steps_after_it(tmp_path):
    """A day's event file is removed from the source (retention) and the range is re-run: the raw
    audit fails, raw.events keeps that day's rows as they were, and nothing after it runs."""
    pipeline = Pipeline(tmp_path)
    data = crafted()
    data.write(pipeline.raw_dir)
    pipeline.materialize(FIRST, LAST)
    published = pipeline.query("SELECT * FROM raw.events ORDER BY ALL")
    exported = sync_table(tmp_path / "warehouse.duckdb")
    files = {p: p.stat().st_mtime_ns for p in pipeline.export_dir.rglob("*")}

    data.events = [e for e in data.events if not e["time"].startswith("2026-06-02")]
    data.write(pipeline.raw_dir)
    result = pipeline.run(FIRST, LAST)
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = evaluations.pop("activity_every_day")
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["missing_days"].value == "2026-06-02 (no events)"
    assert all(e.passed for e in evaluations.values())  # the other raw checks
    assert result.get_asset_materialization_events() == []
    cls, message = pipeline.failure_of(result)
    assert (cls, message.splitlines()[0]) == ("AuditFailed", (
        "audit failed, nothing published: raw_events and accounts for 2026-06-01 .. 2026-06-03: "
        "activity_every_day (days_checked=3; days_missing_activity=1; missing_days=2026-06-02 (no events); "
        "known_gaps_in_range=none; fewest_events_in_a_day=0; fewest_sessions_in_a_day=1). Re-export the missing "
        "days, or, if they have no activity on purpose, list them in HEALTH_KNOWN_GAPS"))
    pd.testing.assert_frame_equal(pipeline.query("SELECT * FROM raw.events ORDER BY ALL"), published)
    pd.testing.assert_frame_equal(sync_table(tmp_path / "warehouse.duckdb"), exported)
    assert {p: p.stat().st_mtime_ns for p in pipeline.export_dir.rglob("*")} == files


@pytest.mark.slow
def test_a_failed_export_audit_leaves_the_sync_table_and_its_files_as_they_were(tmp_path, monkeypatch):
    """The sync table's audit fails after its rows were swapped in and its files staged: the
    table, the files and the export folder are exactly as before the run."""
    import health_pipeline.checks as checks

    pipeline = Pipeline(tmp_path)
    crafted().write(pipeline.raw_dir)
    pipeline.materialize(FIRST, LAST)
    exported = sync_table(tmp_path / "warehouse.duckdb")
    sync_files = pipeline.export_dir / "account_health"
    files = {p: p.read_bytes() for p in sync_files.iterdir()}

    def wrong_columns(conn, first_day, last_day, export_dir, contract):
        return check_export_columns_match_contract(conn, first_day, last_day, export_dir, ["no_such_column"])

    monkeypatch.setattr(checks, "check_export_columns_match_contract", wrong_columns)
    result = pipeline.run(FIRST, LAST)
    assert not result.success and pipeline.failure_of(result)[0] == "AuditFailed"
    assert "sync_export" not in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    pd.testing.assert_frame_equal(sync_table(tmp_path / "warehouse.duckdb"), exported)
    assert {p: p.read_bytes() for p in sync_files.iterdir()} == files
    assert not (pipeline.export_dir / ".staging").exists()


def test_the_code_location_has_every_check_blocking_partitioned_and_in_the_warehouse_pool():
    from health_pipeline.definitions import defs
    from health_pipeline.partitions import daily_partitions
    from health_pipeline.resources import Warehouse

    checks = {(spec.asset_key.to_user_string(), spec.name): (spec, a.op.pool)
              for a in defs.assets for spec in a.check_specs}
    assert sorted(checks) == [
        ("account_health", "live_accounts_scored_once"), ("account_health", "scores_within_0_and_100"),
        ("account_metrics", "counts_non_negative"), ("account_metrics", "shares_within_0_and_1"),
        ("accounts", "snapshot_complete"), ("contact_metrics", "counts_non_negative"),
        ("raw_events", "activity_every_day"), ("raw_events", "ids_and_times_not_null"),
        ("raw_events", "ids_unique_after_dedupe"), ("raw_events", "required_columns_present"),
        ("raw_events", "times_inside_their_partition"),
        ("sync_export", "columns_match_contract"), ("sync_export", "rows_match_scored_accounts"),
    ]
    for key, (spec, pool) in checks.items():
        assert spec.blocking and pool == Warehouse.POOL, key
        assert spec.description, key
    # Each asset audits its own range before it publishes: the checks run in the asset's step.
    assert {a.partitions_def for a in defs.assets if a.check_specs} == {daily_partitions()}
    assert len(defs.resolve_job_def("health_job").graph.nodes) == len(defs.assets)
