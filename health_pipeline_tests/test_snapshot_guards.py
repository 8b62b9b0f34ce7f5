"""A partial accounts or users export stops the run instead of rewriting scores and history.

Each run compares the accounts and users it read with the last snapshot it accepted. An account
gone, an account that lost more than the allowed share of its users, or a required attribute
emptied is a blocking failure naming the accounts, and nothing is published; a smaller snapshot
can be accepted on purpose with a run tag.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.checks import ACCEPT_SNAPSHOT_TAG
from health_pipeline_tests.conftest import UP_TO_THE_EXPORTS, Pipeline, RawData, sync_table

FIRST, LAST = dt.date(2026, 6, 1), dt.date(2026, 6, 3)


def portfolio(users_of_a2: int = 5) -> RawData:
    """Two paying accounts, active every day; A2 has `users_of_a2` users."""
    data = RawData()
    for aid in ("A1", "A2"):
        data.accounts.append(dict(account_id=aid, name=f"{aid} Co", owner="Ana", plan="growth", arr=1000.0,
                                  vertical="saas", customer_since="2025-01-01", status="paying"))
    data.users = [dict(user_id="u1", identity="u1@a1.com", joindate="2026-01-01", account_id="A1", role="admin")]
    data.users += [dict(user_id=f"b{i}", identity=f"b{i}@a2.com", joindate="2026-01-01", account_id="A2",
                        role="analyst") for i in range(users_of_a2)]
    for n, day in enumerate(("2026-06-01", "2026-06-02", "2026-06-03")):
        data.sessions.append(dict(session_id=f"s{n}", user_id="u1", time=f"{day} 09:00:00"))
        data.events.append(dict(event_id=f"e{n}", user_id="u1", session_id=f"s{n}", time=f"{day} 09:01:00",
                                event_table_name="run_query"))
    return data


@pytest.fixture
def accepted(tmp_path) -> Pipeline:
    pipeline = Pipeline(tmp_path)
    portfolio().write(pipeline.raw_dir)
    pipeline.materialize(FIRST, LAST, selection=UP_TO_THE_EXPORTS)  # what the guard must leave unchanged
    return pipeline


def published(pipeline: Pipeline) -> dict:
    return {table: pipeline.query(f"SELECT * FROM {table} ORDER BY ALL")
            for table in ("raw.accounts", "raw.contacts", "core.account_health")}


def assert_unchanged(pipeline: Pipeline, before: dict) -> None:
    for table, frame in published(pipeline).items():
        pd.testing.assert_frame_equal(frame, before[table], obj=table)


def test_a_users_export_that_lost_an_accounts_users_stops_the_run_and_names_them(accepted):
    before, sync_before = published(accepted), sync_table(accepted.root / "warehouse.duckdb")
    portfolio(users_of_a2=0).write(accepted.raw_dir)
    result = accepted.run(FIRST, LAST)
    assert not result.success
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}["snapshot_complete"]
    assert not check.passed
    assert check.metadata["changes"].value == "A2: 5 → 0 users"
    assert (check.metadata["accounts_before"].value, check.metadata["accounts_now"].value) == (2, 2)
    cls, message = accepted.failure_of(result)
    assert cls == "AuditFailed" and "snapshot_complete" in message and "A2: 5 → 0 users" in message
    assert_unchanged(accepted, before)
    pd.testing.assert_frame_equal(sync_table(accepted.root / "warehouse.duckdb"), sync_before)


def test_an_account_gone_from_the_export_stops_a_rerun_of_an_old_day(accepted):
    before = published(accepted)
    data = portfolio()
    data.accounts = [a for a in data.accounts if a["account_id"] != "A2"]
    data.users = [u for u in data.users if u["account_id"] != "A2"]
    data.write(accepted.raw_dir)
    result = accepted.run(FIRST, FIRST)
    assert not result.success
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}["snapshot_complete"]
    assert check.metadata["changes"].value == "A2: missing from accounts"
    assert_unchanged(accepted, before)


def test_an_emptied_required_attribute_stops_the_run(accepted):
    data = portfolio()
    data.accounts[1]["plan"] = None
    data.write(accepted.raw_dir)
    result = accepted.run(FIRST, LAST)
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}["snapshot_complete"]
    assert not result.success and check.metadata["changes"].value == "A2: lost plan"


@pytest.mark.slow
def test_a_small_loss_within_the_allowed_share_passes(accepted):
    """Two of five users gone is a 40 % drop, within the default 50 %: normal churn of seats."""
    portfolio(users_of_a2=3).write(accepted.raw_dir)
    result = accepted.materialize(FIRST, LAST)
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}["snapshot_complete"]
    assert check.passed and check.metadata["changes"].value == "none"


@pytest.mark.slow
def test_a_smaller_snapshot_accepted_on_purpose_becomes_the_new_reference(accepted):
    portfolio(users_of_a2=0).write(accepted.raw_dir)
    result = accepted.materialize(FIRST, LAST, tags={ACCEPT_SNAPSHOT_TAG: "true"})
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}["snapshot_complete"]
    assert check.passed and check.metadata["accepted_on_purpose"].value is True
    assert check.metadata["changes"].value == "A2: 5 → 0 users"
    assert check.description == "a smaller snapshot accepted on purpose"
    # The next run compares with the accepted snapshot, so the same export passes without the tag.
    again = accepted.materialize(FIRST, LAST)
    check = {e.check_name: e for e in again.get_asset_check_evaluations()}["snapshot_complete"]
    assert check.passed and check.metadata["changes"].value == "none"
    assert accepted.query("SELECT count(DISTINCT accepted_at) AS n FROM raw.accepted_snapshots")["n"][0] == 3


def test_the_allowed_share_is_configurable(tmp_path):
    pipeline = Pipeline(tmp_path, snapshot_max_drop=0.1)
    portfolio().write(pipeline.raw_dir)
    pipeline.materialize(FIRST, LAST, selection=RAW_ACTIVITY_ASSETS)  # accepts the reference snapshot
    portfolio(users_of_a2=4).write(pipeline.raw_dir)   # 20 % gone, more than 10 %
    result = pipeline.run(FIRST, LAST)
    check = {e.check_name: e for e in result.get_asset_check_evaluations()}["snapshot_complete"]
    assert not result.success and check.metadata["changes"].value == "A2: 5 → 4 users"
    assert check.metadata["max_user_drop"].value == "10%"


@pytest.mark.slow
def test_the_cli_prints_a_failed_audit_as_one_line_without_a_traceback(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    portfolio().write(tmp_path / "raw")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home"),
           "HEALTH_RAW_DIR": str(tmp_path / "raw"), "HEALTH_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
           "HEALTH_EXPORT_DIR": str(tmp_path / "exports")}
    cli = [str(Path(sys.executable).parent / "health-pipeline"), "run", "--start", str(FIRST), "--end", str(LAST)]
    assert subprocess.run(cli, env=env, capture_output=True, timeout=300).returncode == 0
    portfolio(users_of_a2=0).write(tmp_path / "raw")
    failed = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("raw_activity failed: audit failed, nothing published: "
                               "raw_events and accounts for 2026-06-01 .. 2026-06-03: snapshot_complete (")
    assert "changes=A2: 5 → 0 users" in lines[0]
    assert lines[0].endswith("If the loss is real, run again with --accept-snapshot "
                             "(docs/operations.md: A smaller snapshot on purpose)")
    assert "Traceback" not in failed.stdout + failed.stderr
