"""Metric values against hand-computed expectations on a small crafted dataset.

Snapshot date D = 2026-08-31, so W28 = [08-04, 08-31], P28 = [07-07, 08-03], W90 = [06-03, 08-31].
Every expected number below is worked out by hand in the comment next to it.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline_tests.conftest import UP_TO_THE_EXPORTS, Pipeline, RawData

D = dt.date(2026, 8, 31)
# The run scores D-13 .. D+1 (D must not see D+1); it first extracts the earlier days, from the
# data's first (D-60), which D's windows read.
FIRST, LAST = "2026-08-18", "2026-09-01"


def at(days_before_d: int, clock: str = "10:00:00.000") -> str:
    return f"{D - dt.timedelta(days=days_before_d)} {clock}"


def crafted() -> RawData:
    data = RawData()
    data.accounts = [
        dict(account_id="ACME", name="Acme", owner="Ana", plan="growth", arr=50000.0, vertical="saas",
             customer_since="2024-01-01", status="paying"),
        dict(account_id="EMPTY", name="Empty Co", owner="Ben", plan="starter", arr=9000.0, vertical="media",
             customer_since="2025-01-01", status="paying"),
        dict(account_id="IDLE", name="Idle Inc", owner="Ben", plan="starter", arr=8000.0, vertical="media",
             customer_since="2025-01-01", status="trial"),
        dict(account_id="GONE", name="Gone Ltd", owner="Ana", plan="starter", arr=7000.0, vertical="saas",
             customer_since="2023-01-01", status="churned"),
    ]
    user = lambda uid, identity, account, joindate="2026-01-01", role="analyst": dict(  # noqa: E731
        user_id=uid, identity=identity, joindate=joindate, account_id=account, role=role)
    data.users = [
        user("u1", "alice@acme.com", "ACME", role=" Admin"),  # a power role, however it is written
        user("u2", "bob@acme.com", "ACME"),
        user("u3", "qa@garbage.io", "ACME"),       # excluded by pattern
        user("u4", None, "ACME"),                  # excluded: no identity
        user("u5", "carol@acme.com", "ACME", joindate=str(D + dt.timedelta(days=5))),  # joins after D
        user("a1", None, None, joindate="2025-12-01"),  # anonymous, merged into u2
        user("u6", "dan@gone.com", "GONE"),
        user("u7", "erin@idle.com", "IDLE"),
        user("u8", "frank@nowhere.com", "NOPE"),   # account not in accounts: quarantined
        # the same user exported twice (identical rows)
        user("u7", "erin@idle.com", "IDLE"),
    ]
    data.migrations = [dict(from_user_id="a1", to_user_id="u2", time="2026-01-02 00:00:00")]
    ev = iter(range(1, 1000))
    event = lambda uid, time, name="run_query", session=1: dict(  # noqa: E731
        event_id=next(ev), user_id=uid, session_id=session, time=time, event_table_name=name)
    data.events = [
        event("u1", at(0)),                        # W28
        event("u1", at(27, "00:00:00.000")),       # W28: D-27 00:00:00 is in
        event("u1", at(28, "23:59:59.999")),       # P28, not W28
        event("u1", at(5), "save_report"),         # feature, W28
        event("u1", at(40, "10:30:00.000"), "save_report", session=2),  # in u1's first session ever
        event("u1", at(-1, "00:00:00.000")),       # first instant of D+1: out for D
        event("u2", at(10)),                       # W28
        event("u2", at(10, "11:00:00.000"), "group_by"),  # feature, W28
        event("a1", at(12)),                       # merged into u2: W28 usage of u2
        event("u2", at(60)),                       # W90 only (before P28)
        event("u3", at(1)), event("u3", at(1)),    # excluded user
        event("u4", at(1)),                        # excluded user
        event("u6", at(2)),                        # churned account
        event("u8", at(2)),                        # quarantined user
    ]
    data.events.append(dict(data.events[5]))       # a Heap duplicate of u2's D-10 run_query
    data.sessions = [
        dict(session_id=1, user_id="u1", time=at(3)),
        dict(session_id=1, user_id="u1", time=at(3)),  # duplicate session row
        dict(session_id=2, user_id="u1", time=at(40)),  # W90 only
        dict(session_id=3, user_id="u3", time=at(3)),   # excluded user
    ]
    return data


@pytest.fixture(scope="module")
def crafted_run(tmp_path_factory) -> Pipeline:
    pipeline = Pipeline(tmp_path_factory.mktemp("crafted"), sparse=True)
    crafted().write(pipeline.raw_dir)
    pipeline.materialize(FIRST, LAST, selection=UP_TO_THE_EXPORTS)  # the tests read up to the exports
    return pipeline


def test_contact_metrics_by_hand(crafted_run: Pipeline):
    u1 = crafted_run.row("core.contact_metrics", "user_id", "u1", str(D))
    # run_query at D and at D-27 00:00; the one at D-28 23:59:59.999 is P28; D+1 00:00 is out.
    assert u1["run_query_28d"] == 2
    assert u1["usage_28d"] == 2
    assert u1["usage_prev_28d"] == 1
    assert u1["usage_90d"] == 3
    assert u1["save_report_28d"] == 1 and u1["group_by_28d"] == 0
    assert u1["sessions_28d"] == 1          # the D-3 session, deduplicated
    assert u1["sessions_90d"] == 2          # plus the D-40 session
    assert u1["active_days_28d"] == 4       # D, D-3 (session), D-5, D-27
    assert u1["kpi_28d"] == 2
    assert u1["last_seen_at"] == pd.Timestamp(at(0))  # not D+1's event
    assert u1["last_usage_date"] == pd.Timestamp(D)

    u2 = crafted_run.row("core.contact_metrics", "user_id", "u2", str(D))
    # D-10 run_query once (its duplicate dropped) + a1's D-12 run_query via the merge.
    assert u2["usage_28d"] == 2
    assert u2["group_by_28d"] == 1
    assert u2["usage_prev_28d"] == 0
    assert u2["usage_90d"] == 3             # plus D-60
    assert u2["active_days_28d"] == 2       # D-10 and D-12
    assert u2["last_seen_at"] == pd.Timestamp(at(10, "11:00:00"))


def test_excluded_merged_and_unjoined_users_are_not_contacts(crafted_run: Pipeline):
    contacts = set(crafted_run.query(
        "SELECT user_id FROM core.contact_metrics WHERE snapshot_date = ?", [str(D)]
    )["user_id"])
    # u3/u4 excluded, a1 merged into u2, u5 joins after D, u8's account is unknown (quarantined).
    assert contacts == {"u1", "u2", "u6", "u7"}
    reasons = dict(crafted_run.query("SELECT user_id, excluded_reason FROM raw.contacts").values)
    assert reasons["u3"] == "identity_pattern" and reasons["u4"] == "no_identity"
    assert "a1" not in reasons
    # Excluded users' rows never reach the warehouse.
    assert crafted_run.query("SELECT count(*) AS n FROM raw.events WHERE user_id IN ('u3','u4')")["n"][0] == 0


def test_account_rollup_by_hand(crafted_run: Pipeline):
    acme = crafted_run.row("core.account_metrics", "account_id", "ACME", str(D))
    assert acme["contacts_total"] == 2            # u1, u2
    assert acme["active_users_28d"] == 2
    assert acme["active_users_prev_28d"] == 1     # u1 (D-28)
    assert acme["usage_28d"] == 4 and acme["usage_prev_28d"] == 1
    assert acme["usage_change_pct"] == pytest.approx(3.0)          # (4 - 1) / 1
    assert acme["active_users_change_pct"] == pytest.approx(1.0)   # (2 - 1) / 1
    assert acme["sessions_28d"] == 1
    assert acme["breadth_28d"] == pytest.approx(1.0)               # 2 / 2
    assert acme["top_user_share_28d"] == pytest.approx(0.5)        # 2 / 4
    assert acme["features_adopted_28d"] == 2                       # save_report and group_by
    assert acme["kpi_users_28d"] == 2
    assert acme["days_since_last_active"] == 0
    assert not acme["is_inactive_90d"]
    assert acme["power_contacts_total"] == 1 and acme["power_contacts_active_28d"] == 1  # u1, " Admin"
    assert acme["days_since_power_contact_active"] == 0
    # Only u1 has had a session; its first (D-40, session 2) included save_report.
    assert acme["first_session_activated_share"] == 1.0
    assert (acme["run_query_users_28d"], acme["save_report_users_28d"], acme["group_by_users_28d"]) == (2, 1, 1)


def test_first_session_is_judged_by_its_own_events(crafted_run: Pipeline):
    u1 = crafted_run.row("core.contact_metrics", "user_id", "u1", str(D))
    assert u1["first_session_date"] == pd.Timestamp(D - dt.timedelta(days=40))
    assert u1["first_session_activated"]
    # D-3 has a session but no save_report in it.
    fact = crafted_run.query(
        "SELECT first_session_activated FROM core.daily_contact_activity WHERE user_id = 'u1' AND activity_date = ?",
        [str(D - dt.timedelta(days=3))],
    )
    assert fact["first_session_activated"].tolist() == [False]
    u2 = crafted_run.row("core.contact_metrics", "user_id", "u2", str(D))
    assert pd.isna(u2["first_session_date"]) and pd.isna(u2["first_session_activated"])  # never had a session


def test_accounts_with_no_users_or_no_activity_keep_their_row(crafted_run: Pipeline):
    empty = crafted_run.row("export.account_health", "account_id", "EMPTY", str(D))
    assert empty["contacts_total"] == 0 and empty["usage_28d"] == 0 and empty["active_users_28d"] == 0
    for ratio in ("breadth_28d", "top_user_share_28d", "usage_change_pct", "days_since_last_active",
                  "days_since_power_contact_active", "first_session_activated_share"):
        assert pd.isna(empty[ratio]), ratio
    assert empty["power_contacts_total"] == 0
    assert empty["is_inactive_90d"]

    idle = crafted_run.row("export.account_health", "account_id", "IDLE", str(D))
    assert idle["contacts_total"] == 1 and idle["breadth_28d"] == 0.0
    assert pd.isna(idle["top_user_share_28d"]) and idle["is_inactive_90d"]


def test_scores_by_hand(crafted_run: Pipeline):
    acme = crafted_run.row("export.account_health", "account_id", "ACME", str(D))
    # Two contacts: the light_footprint segment (no concentration; adoption weighs 20).
    # usage 4 -> [1, 50): 1; trend 3.0 -> [0.1, inf): 4; breadth 1.0 -> [0.6, 1]: 4; 2 features: 4.
    # usage 40 x 5/8 + adoption 20 x 4/4 + depth 20 x 4/4 = 65 of 80 -> 81.25 -> 81.3.
    assert acme["segment"] == "light_footprint"
    points = {c: (acme[f"{c}_points"], acme[f"{c}_points_possible"]) for c in
              ("usage_level", "usage_trend", "breadth", "feature_depth")}
    assert points == {"usage_level": (1, 4), "usage_trend": (4, 4), "breadth": (4, 4), "feature_depth": (4, 4)}
    assert pd.isna(acme["concentration_points"]) and pd.isna(acme["power_contacts_points"])
    assert (acme["usage_level_value"], acme["usage_level_bin"]) == (4, "[1, 50)")
    assert acme["health_score"] == 81.3 and acme["health_band"] == "healthy"
    # usage_level lost 100 x 40 x 3/8 / 80 = 18.75 score points. No CSM pulse: the pulse is
    # excluded with its group, and named as missing.
    assert acme["top_drag"] == "usage_level" and acme["missing_components"] == "pulse"
    assert acme["score_reason"] == ("healthy 81.3/100: biggest drag usage_level (-18.8 points; usage_28d = 4 in "
                                    "[1, 50)); missing: pulse")

    empty = crafted_run.row("export.account_health", "account_id", "EMPTY", str(D))
    # No contacts: light_footprint. usage 0 + trend null (neutral: 2) = 2 of 8; breadth null (zero)
    # 0 of 4; depth 0 of 4. 40 x 2/8 / 80 -> 12.5. usage_level, breadth and feature_depth each
    # cost 25 points; ties go to the first name.
    assert empty["health_score"] == 12.5 and empty["health_band"] == "at_risk"
    assert empty["top_drag"] == "breadth" and empty["missing_components"] == "breadth,pulse,usage_trend"
    assert empty["score_reason"] == (
        "at_risk 12.5/100: biggest drag breadth (-25.0 points; breadth_28d = missing); "
        "missing: breadth,pulse,usage_trend"
    )


def test_sync_table_rows_and_files(crafted_run: Pipeline):
    day = crafted_run.query("SELECT * FROM export.account_health WHERE snapshot_date = ?", [str(D)])
    assert sorted(day["account_id"]) == ["ACME", "EMPTY", "IDLE"]  # GONE is churned
    parquet = pd.read_parquet(crafted_run.export_dir / "account_health" / f"snapshot_date={D}.parquet")
    csv = pd.read_csv(crafted_run.export_dir / "account_health" / f"snapshot_date={D}.csv")
    assert list(parquet["account_id"]) == list(csv["account_id"]) == ["ACME", "EMPTY", "IDLE"]
    assert list(parquet.columns) == list(day.columns)
    contacts = pd.read_parquet(crafted_run.export_dir / "contact_usage" / f"snapshot_date={D}.parquet")
    assert set(contacts["user_id"]) == {"u1", "u2", "u6", "u7"}
    assert contacts.set_index("user_id").loc["u1", "identity"] == "alice@acme.com"


@pytest.mark.slow
def test_csv_with_offset_timestamps_matches_parquet(crafted_run: Pipeline, tmp_path):
    """The same events written as CSV in UTC+02:00 local time give identical metrics."""
    data = crafted()
    for row in data.events + data.sessions:
        local = pd.Timestamp(row["time"]) + pd.Timedelta(hours=2)
        row["time"] = local.isoformat(timespec="milliseconds") + "+02:00"
    csv_run = Pipeline(tmp_path, sparse=True)
    data.write(csv_run.raw_dir, fmt="csv")
    csv_run.materialize(FIRST, LAST)
    sql = "SELECT * EXCLUDE (computed_at) FROM export.{} ORDER BY ALL"
    for table in ("account_health", "contact_usage"):
        pd.testing.assert_frame_equal(crafted_run.query(sql.format(table)), csv_run.query(sql.format(table)))


@pytest.mark.slow
def test_rerun_is_idempotent(crafted_run: Pipeline, tmp_path):
    tables = ["raw.events", "raw.sessions", "core.daily_contact_activity", "core.contact_metrics",
              "core.account_metrics", "core.account_health", "export.account_health", "export.contact_usage"]

    def snapshot():
        return {t: crafted_run.query(f"SELECT * FROM {t} ORDER BY ALL").drop(columns="computed_at", errors="ignore")
                for t in tables}

    before = snapshot()
    crafted_run.materialize(str(D), str(D))          # one day again
    crafted_run.materialize("2026-08-20", LAST)      # an overlapping range again
    after = snapshot()
    for table in tables:
        pd.testing.assert_frame_equal(before[table], after[table], obj=table)


def test_backfill_starting_late_reads_existing_history(crafted_run: Pipeline):
    """Re-running only D reads the fact's history, so its windows and last_seen stay whole."""
    crafted_run.materialize(str(D), str(D), selection=UP_TO_THE_EXPORTS)
    u2 = crafted_run.row("core.contact_metrics", "user_id", "u2", str(D))
    assert u2["usage_90d"] == 3 and u2["usage_28d"] == 2
    assert not math.isnan(crafted_run.row("core.account_metrics", "account_id", "ACME", str(D))["usage_change_pct"])


@pytest.mark.slow
def test_extraction_reports_what_it_dropped(tmp_path):
    pipeline = Pipeline(tmp_path, sparse=True)
    crafted().write(pipeline.raw_dir)
    result = pipeline.materialize(FIRST, LAST, selection=RAW_ACTIVITY_ASSETS)
    meta = Pipeline.raw_activity_metadata(result)
    # 16 event rows in range: 1 duplicate; u3 x2 and u4 are excluded; u8's account is unknown,
    # so u8 is quarantined and so is its event.
    assert meta["events_read"] == 16
    assert meta["events_duplicates_dropped"] == 1
    assert meta["events_from_excluded_users"] == 3
    assert meta["events_quarantined"] == 1
    assert meta["quarantined.all_events.quarantined_user"] == 1
    assert meta["quarantined.users.unknown_account"] == 1
    assert meta["events_loaded"] == 11 == Pipeline.row_count(result, "raw_events")
    assert (meta["sessions_read"], meta["sessions_duplicates_dropped"], meta["sessions_loaded"]) == (4, 1, 2)
    assert meta["contacts_excluded"] == 2


def test_a_contact_keeps_its_own_joindate_when_it_is_the_earliest(pipeline: Pipeline):
    data = RawData()
    data.accounts = [dict(account_id="ACME", name="Acme", owner="Ana", plan="growth", arr=1.0, vertical="saas",
                          customer_since="2024-01-01", status="paying")]
    data.users = [
        dict(user_id="u1", identity="alice@acme.com", joindate="2026-01-01", account_id="ACME", role="admin"),
        dict(user_id="a1", identity=None, joindate="2026-03-01", account_id=None, role=None),   # later anon id
        dict(user_id="u2", identity="bob@acme.com", joindate="2026-05-01", account_id="ACME", role="analyst"),
        dict(user_id="a2", identity=None, joindate="2026-02-01", account_id=None, role=None),   # earlier anon id
    ]
    data.migrations = [dict(from_user_id="a1", to_user_id="u1", time="2026-03-02 00:00:00"),
                       dict(from_user_id="a2", to_user_id="u2", time="2026-05-02 00:00:00")]
    data.sessions = [dict(session_id=1, user_id="u1", time=at(0))]
    data.write(pipeline.raw_dir)
    pipeline.known_gaps = [str(D)]  # a session but no events: declared, so the raw audit lets it through
    pipeline.materialize(str(D), str(D), selection=RAW_ACTIVITY_ASSETS)
    joined = dict(pipeline.query("SELECT user_id, joindate FROM raw.contacts").values)
    assert {k: str(v.date()) for k, v in joined.items()} == {"u1": "2026-01-01", "u2": "2026-02-01"}
