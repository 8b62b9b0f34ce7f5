"""Point-in-time history: a rerun of a past day reproduces it, whatever the exports say today.

Accounts are scored on the days they were customers (customer_since on or before the day, no
churn date on or before it), and every attribute is the one in force on the day: a change the
accounts or users export shows is dated from the first day no earlier run processed.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.checks import ACCEPT_SNAPSHOT_TAG
from health_pipeline_tests.conftest import UP_TO_THE_EXPORTS, Pipeline, RawData, export_files, sync_table

FIRST, LAST = dt.date(2026, 6, 1), dt.date(2026, 6, 10)


def account(aid: str, **attributes) -> dict:
    return dict(account_id=aid, name=f"{aid} Co", owner="Ana", plan="growth", arr=1000.0, vertical="saas",
                customer_since="2025-01-01", status="paying") | attributes


def portfolio(accounts: list[dict] | None = None, outcomes: list[dict] | None = None,
              u2_account: str = "A2") -> RawData:
    """A1 and A2, each with one user active every day of June 2026's first ten days."""
    data = RawData(accounts=accounts or [account("A1"), account("A2", owner="Ben")], outcomes=outcomes)
    data.users = [dict(user_id="u1", identity="u1@a1.com", joindate="2026-01-01", account_id="A1", role="admin"),
                  dict(user_id="u2", identity="u2@a2.com", joindate="2026-01-01", account_id=u2_account,
                       role="analyst")]
    for n in range(10):
        day = FIRST + dt.timedelta(days=n)
        for user in ("u1", "u2"):
            data.sessions.append(dict(session_id=f"s{user}{n}", user_id=user, time=f"{day} 09:00:00"))
            data.events.append(dict(event_id=f"e{user}{n}", user_id=user, session_id=f"s{user}{n}",
                                    time=f"{day} 09:01:00", event_table_name="run_query"))
    return data


def churn(aid: str, day: str) -> dict:
    return dict(account_id=aid, outcome_date=day, outcome="churned", arr_before=1000.0, arr_after=0.0,
                reason="budget")


def days_of(frame: pd.DataFrame, aid: str) -> list[str]:
    return [str(d.date()) for d in sorted(frame.loc[frame["account_id"] == aid, "snapshot_date"])]


def versions(pipeline: Pipeline, history: str, key: str, attribute: str) -> list[list[str]]:
    """A history table's versions as text: key, attribute, valid_from, valid_to ('-' when open)."""
    return pipeline.query(
        f"SELECT {key}, {attribute}, coalesce(CAST(valid_from AS VARCHAR), '-'), "
        f"coalesce(CAST(valid_to AS VARCHAR), '-') FROM {history} ORDER BY {key}, valid_from NULLS FIRST"
    ).values.tolist()


def exported_days(pipeline: Pipeline, first: dt.date, last: dt.date) -> dict:
    """The sync files of the days in [first, last], by path, without computed_at."""
    days = {str(first + dt.timedelta(days=n)) for n in range((last - first).days + 1)}
    return {path: frame for path, frame in export_files(pipeline.root).items()
            if "account_health/" in path and path.split("snapshot_date=")[1][:10] in days}


@pytest.fixture
def five_days(tmp_path) -> Pipeline:
    pipeline = Pipeline(tmp_path)
    portfolio().write(pipeline.raw_dir)
    pipeline.materialize(FIRST, dt.date(2026, 6, 5), selection=UP_TO_THE_EXPORTS)
    return pipeline


@pytest.mark.slow
def test_a_rerun_keeps_the_past_and_later_days_take_the_new_owner_arr_and_churn(five_days):
    """The issue's scenario: run a range; the CRM then changes A1's owner and ARR and reports A2's
    churn on June 8; re-running the first days changes nothing, and the later days show both."""
    before = exported_days(five_days, FIRST, dt.date(2026, 6, 5))
    table_before = sync_table(five_days.root / "warehouse.duckdb")
    portfolio([account("A1", owner="Cara", arr=2000.0), account("A2", owner="Ben")],
              outcomes=[churn("A2", "2026-06-08")]).write(five_days.raw_dir)

    five_days.materialize(FIRST, dt.date(2026, 6, 5))
    after = exported_days(five_days, FIRST, dt.date(2026, 6, 5))
    assert before.keys() == after.keys() and len(before) == 10  # parquet and CSV for 5 days
    for path, frame in before.items():
        pd.testing.assert_frame_equal(after[path], frame, obj=path)
    pd.testing.assert_frame_equal(sync_table(five_days.root / "warehouse.duckdb"), table_before)

    five_days.materialize(dt.date(2026, 6, 6), LAST)
    table = sync_table(five_days.root / "warehouse.duckdb")
    a1 = table[table["account_id"] == "A1"]
    a1 = a1.set_index(a1["snapshot_date"].dt.date.astype(str))
    assert list(a1.loc["2026-06-01":"2026-06-05", "owner"].unique()) == ["Ana"]
    assert list(a1.loc["2026-06-06":"2026-06-10", "owner"].unique()) == ["Cara"]
    assert list(a1.loc["2026-06-06":"2026-06-10", "arr"].unique()) == [2000.0]
    assert list(a1.loc["2026-06-01":"2026-06-05", "arr"].unique()) == [1000.0]
    # A2 churned on June 8: scored through June 7, on no day after.
    assert days_of(table, "A2") == [f"2026-06-0{d}" for d in range(1, 8)]

    # The whole range again, in one run: the same again.
    five_days.materialize(FIRST, LAST)
    pd.testing.assert_frame_equal(sync_table(five_days.root / "warehouse.duckdb"), table)


@pytest.mark.slow
def test_the_history_tables_hold_each_version_with_the_days_it_was_in_force(five_days):
    portfolio([account("A1", owner="Cara"), account("A2", owner="Ben")], u2_account="A1").write(five_days.raw_dir)
    # A2 losing its only user trips the snapshot guard: accepted on purpose.
    five_days.materialize(dt.date(2026, 6, 6), dt.date(2026, 6, 7), tags={ACCEPT_SNAPSHOT_TAG: "true"})
    assert versions(five_days, "raw.account_history", "account_id", "owner") == [
        ["A1", "Ana", "-", "2026-06-06"],  # the first version seen stands for the past
        ["A1", "Cara", "2026-06-06", "-"],  # dated from the first day no run had processed
        ["A2", "Ben", "-", "-"],
    ]
    assert versions(five_days, "raw.contact_history", "user_id", "account_id") == [
        ["u1", "A1", "-", "-"], ["u2", "A2", "-", "2026-06-06"], ["u2", "A1", "2026-06-06", "-"],
    ]
    # The contact that moved counts for its account of the day.
    metrics = five_days.query("SELECT account_id, snapshot_date, contacts_total FROM core.account_metrics "
                              "WHERE snapshot_date IN ('2026-06-05', '2026-06-06') ORDER BY ALL")
    assert metrics.astype(str).values.tolist() == [
        ["A1", "2026-06-05", "1"], ["A1", "2026-06-06", "2"], ["A2", "2026-06-05", "1"], ["A2", "2026-06-06", "0"],
    ]


@pytest.mark.slow
def test_a_change_seen_by_reruns_only_is_dated_from_the_next_new_day_and_can_be_superseded(five_days):
    """Two reruns of published days see two different owners before any new day: the first of
    them never applied to a processed day, so the history keeps only the second."""
    for owner in ("Cara", "Dan"):
        portfolio([account("A1", owner=owner), account("A2", owner="Ben")]).write(five_days.raw_dir)
        five_days.materialize(FIRST, dt.date(2026, 6, 5))
    assert versions(five_days, "raw.account_history", "account_id", "owner")[:2] == [
        ["A1", "Ana", "-", "2026-06-06"], ["A1", "Dan", "2026-06-06", "-"]]
    assert set(sync_table(five_days.root / "warehouse.duckdb")["owner"]) == {"Ana", "Ben"}


@pytest.mark.slow
def test_a_churn_dated_inside_published_days_removes_the_account_from_that_day_on(five_days):
    """A churn date is a fact about the past: a rerun drops the days on and after it, and keeps
    the days before it unchanged."""
    before = sync_table(five_days.root / "warehouse.duckdb")
    portfolio(outcomes=[churn("A2", "2026-06-03")]).write(five_days.raw_dir)
    five_days.materialize(FIRST, dt.date(2026, 6, 5))
    after = sync_table(five_days.root / "warehouse.duckdb")
    assert days_of(after, "A2") == ["2026-06-01", "2026-06-02"]
    kept = before[(before["account_id"] == "A1") | (before["snapshot_date"] < "2026-06-03")]
    pd.testing.assert_frame_equal(after, kept.reset_index(drop=True))


@pytest.mark.parametrize("dated_by", ["churned_at", "outcome", "both"])
def test_an_accounts_churn_date_is_the_earliest_of_churned_at_and_its_churned_outcomes(tmp_path, dated_by):
    pipeline = Pipeline(tmp_path)
    churned_at = {"churned_at": "2026-06-04"} if dated_by in ("churned_at", "both") else {"churned_at": None}
    outcomes = [churn("A2", "2026-06-03" if dated_by == "both" else "2026-06-04")] if dated_by != "churned_at" else []
    portfolio([account("A1"), account("A2", status="churned", **churned_at)], outcomes=outcomes).write(pipeline.raw_dir)
    pipeline.materialize(FIRST, dt.date(2026, 6, 5), selection=UP_TO_THE_EXPORTS)
    last = "2026-06-02" if dated_by == "both" else "2026-06-03"
    assert days_of(sync_table(pipeline.root / "warehouse.duckdb"), "A2")[-1] == last


def test_an_account_churned_without_a_date_is_never_scored_and_is_counted(tmp_path):
    pipeline = Pipeline(tmp_path)
    portfolio([account("A1"), account("A2", status="Churned ")]).write(pipeline.raw_dir)
    result = pipeline.materialize(FIRST, dt.date(2026, 6, 3), selection=UP_TO_THE_EXPORTS)
    assert days_of(sync_table(pipeline.root / "warehouse.duckdb"), "A2") == []
    assert pipeline.raw_activity_metadata(result)["accounts_churned_without_date"] == 1


def test_an_account_is_scored_from_its_customer_since_on(tmp_path):
    pipeline = Pipeline(tmp_path)
    portfolio([account("A1"), account("A2", customer_since="2026-06-03")]).write(pipeline.raw_dir)
    # The live-accounts check agrees, or this fails.
    pipeline.materialize(FIRST, dt.date(2026, 6, 5), selection=UP_TO_THE_EXPORTS)
    table = sync_table(pipeline.root / "warehouse.duckdb")
    assert days_of(table, "A2") == ["2026-06-03", "2026-06-04", "2026-06-05"]
    assert days_of(table, "A1") == [f"2026-06-0{d}" for d in range(1, 6)]


def test_bad_outcome_rows_go_to_the_quarantine_with_their_reason(tmp_path):
    pipeline = Pipeline(tmp_path)
    good = churn("A2", "2026-06-04")
    outcomes = [
        good, dict(good),  # an identical copy: dropped as a duplicate
        churn("A1", "2026-06-05") | {"arr_before": 5.0},  # loads: another account
        churn("A1", "2026-06-05") | {"arr_before": 7.0},  # the same outcome with other values
        churn("A9", "2026-06-04"),  # no such account
        churn("A1", "2026-06-04") | {"outcome": "paused"},
        churn("A1", "soon"),
        churn(None, "2026-06-04"),
        dict(account_id="A1", outcome_date="2026-06-01", outcome="Renewed", arr_before="$1,000", arr_after=1000.0,
             reason=None),  # loads (outcome case-insensitive) with arr_before NULL, and is quarantined too
    ]
    portfolio(outcomes=outcomes).write(pipeline.raw_dir, fmt="csv")
    result = pipeline.materialize(FIRST, dt.date(2026, 6, 5), selection=RAW_ACTIVITY_ASSETS)
    quarantined = pipeline.query("SELECT reason, source_row FROM raw.quarantine WHERE source_table = 'outcomes' "
                                 "ORDER BY source_row")
    assert quarantined.values.tolist() == [
        ["conflicting_duplicate", 4], ["unknown_account", 5], ["unknown_outcome", 6],
        ["unparseable_outcome_date", 7], ["null_account_id", 8], ["unparseable_arr", 9],
    ]
    loaded = pipeline.query("SELECT account_id, CAST(outcome_date AS VARCHAR), outcome, "
                            "coalesce(CAST(arr_before AS VARCHAR), '-') FROM raw.outcomes ORDER BY ALL")
    assert loaded.values.tolist() == [
        ["A1", "2026-06-01", "renewed", "-"], ["A1", "2026-06-05", "churned", "5.0"],
        ["A2", "2026-06-04", "churned", "1000.0"],
    ]
    metadata = pipeline.raw_activity_metadata(result)
    assert metadata["outcomes_duplicates_dropped"] == 1
    assert metadata["quarantined.outcomes.unknown_account"] == 1


@pytest.mark.slow
def test_the_crms_account_id_passes_through_to_every_sync_output_as_of_the_day(tmp_path):
    pipeline = Pipeline(tmp_path)
    portfolio([account("A1", crm_account_id="001A"), account("A2", owner="Ben", crm_account_id="001B")]).write(
        pipeline.raw_dir)
    pipeline.materialize(FIRST, dt.date(2026, 6, 5))
    # The CRM merges records and A1 gets a new id: it applies from the next new day, like any attribute.
    portfolio([account("A1", crm_account_id="001Z"), account("A2", owner="Ben", crm_account_id="001B")]).write(
        pipeline.raw_dir)
    pipeline.materialize(dt.date(2026, 6, 6), LAST)
    assert versions(pipeline, "raw.account_history", "account_id", "crm_account_id") == [
        ["A1", "001A", "-", "2026-06-06"], ["A1", "001Z", "2026-06-06", "-"], ["A2", "001B", "-", "-"]]
    for table in ("export.account_health", "export.contact_usage"):
        ids = pipeline.query(f"SELECT account_id, crm_account_id, count(*) AS days FROM {table} GROUP BY ALL "
                             "ORDER BY ALL").values.tolist()
        assert ids == [["A1", "001A", 5], ["A1", "001Z", 5], ["A2", "001B", 10]], table
    assert pipeline.query("SELECT * FROM export.band_changes LIMIT 0").columns[:2].tolist() == [
        "account_id", "crm_account_id"]


@pytest.mark.slow
def test_a_renewal_date_is_versioned_and_the_sync_table_counts_the_days_to_it(tmp_path):
    pipeline = Pipeline(tmp_path)
    portfolio([account("A1", renewal_date="2026-06-08"), account("A2", owner="Ben")]).write(pipeline.raw_dir)
    pipeline.materialize(FIRST, dt.date(2026, 6, 5))
    # A1 renews for a year: the new contract's end applies from the next new day, like any attribute.
    portfolio([account("A1", renewal_date="2027-06-08"), account("A2", owner="Ben")]).write(pipeline.raw_dir)
    pipeline.materialize(dt.date(2026, 6, 6), LAST)
    renewal = "coalesce(CAST(renewal_date AS VARCHAR), 'none')"
    assert versions(pipeline, "raw.account_history", "account_id", renewal) == [
        ["A1", "2026-06-08", "-", "2026-06-06"], ["A1", "2027-06-08", "2026-06-06", "-"], ["A2", "none", "-", "-"]]
    days = pipeline.query("SELECT account_id, CAST(snapshot_date AS VARCHAR) AS day, CAST(renewal_date AS VARCHAR), "
                          "days_to_renewal FROM export.account_health ORDER BY ALL").values.tolist()
    assert [row for row in days if row[0] == "A1"] == [
        ["A1", f"2026-06-0{n}", "2026-06-08", 8 - n] for n in range(1, 6)] + [
        ["A1", f"2026-06-{n:02}", "2027-06-08", 367 - (n - 6)] for n in range(6, 11)]
    assert all(pd.isna(row[2]) and pd.isna(row[3]) for row in days if row[0] == "A2")


@pytest.mark.slow
def test_an_older_account_history_gains_renewal_date_and_seats_purchased_and_versions_both(tmp_path):
    pipeline = Pipeline(tmp_path)
    portfolio([account("A1", renewal_date="2026-06-08", seats_purchased=4), account("A2", owner="Ben")]).write(
        pipeline.raw_dir)
    pipeline.materialize(FIRST, dt.date(2026, 6, 5))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:  # as recorded before accounts carried either
        conn.execute("ALTER TABLE raw.account_history DROP COLUMN renewal_date")
        conn.execute("ALTER TABLE raw.account_history DROP COLUMN seats_purchased")
    portfolio([account("A1", renewal_date="2027-06-08", seats_purchased=6), account("A2", owner="Ben")]).write(
        pipeline.raw_dir)
    pipeline.materialize(dt.date(2026, 6, 6), LAST)
    both = ("coalesce(CAST(renewal_date AS VARCHAR), 'none') || ' ' || "
            "coalesce(CAST(seats_purchased AS VARCHAR), 'none')")
    assert versions(pipeline, "raw.account_history", "account_id", both) == [
        ["A1", "none none", "-", "2026-06-06"], ["A1", "2027-06-08 6.0", "2026-06-06", "-"],
        ["A2", "none none", "-", "-"]]
    assert pipeline.query("SELECT days_to_renewal FROM export.account_health WHERE account_id = 'A1' "
                          "AND snapshot_date = $last", {"last": LAST}).days_to_renewal.tolist() == [363]


def test_an_accounts_export_without_crm_ids_leaves_the_column_empty(five_days):
    exported = five_days.query("SELECT count(*) AS n, count(crm_account_id) AS with_id FROM export.account_health")
    assert exported.n[0] > 0 and exported.with_id[0] == 0

