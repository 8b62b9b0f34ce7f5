"""The signals beyond product usage: the optional csm_pulse, tickets, nps_responses and invoices
tables and accounts.seats_purchased, read and quarantined like the other exports; the metrics
they make, worked out by hand at their windows' edges; Heap's three rules and the Power metrics.

Snapshot date D = 2026-08-31, so W28 = [08-04, 08-31] and W90 = [06-03, 08-31]; the run covers
D + 1 too, which must not leak into D.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.scorecard.parser import load_config
from health_pipeline_tests.conftest import UP_TO_THE_EXPORTS, Pipeline, RawData, sync_table
from health_pipeline_tests.test_history import FIRST, account, portfolio

D = dt.date(2026, 8, 31)
SETTINGS = load_config()


def day(offset: int) -> str:
    """The date `offset` days after D (before it when negative)."""
    return str(D + dt.timedelta(days=offset))


def at(offset: int, clock: str = "12:00:00") -> str:
    return f"{day(offset)} {clock}"


# --- reading and quarantine ---------------------------------------------------------------------

def pulse(account_id, pulse_date, sentiment, **more) -> dict:
    return dict(account_id=account_id, pulse_date=pulse_date, sentiment=sentiment, note=None, author=None) | more


def ticket(ticket_id, account_id, opened_at, closed_at=None, priority="normal", status="open") -> dict:
    return dict(ticket_id=ticket_id, account_id=account_id, opened_at=opened_at, closed_at=closed_at,
                priority=priority, status=status)


def response(user_id, account_id, responded_at, score) -> dict:
    return dict(user_id=user_id, account_id=account_id, responded_at=responded_at, score=score)


def invoice(invoice_id, account_id, due_date, paid_at=None, amount=100.0) -> dict:
    return dict(invoice_id=invoice_id, account_id=account_id, due_date=due_date, paid_at=paid_at, amount=amount)


def bad_signals() -> RawData:
    """The two accounts of test_history's portfolio, a third with an unreadable ARR (it loads), a
    fourth with a negative seats count (it loads), a row without an id, and one bad row of each
    kind per signal table, beside rows that load."""
    data = portfolio([account("A1", seats_purchased=4), account("A2", owner="Ben", seats_purchased="many"),
                      account("A3", arr="$5", seats_purchased=-1), account("A4", seats_purchased=-1),
                      account(None, name="No id")])
    data.users.append(dict(user_id="qa", identity="qa@garbage.io", joindate="2026-01-01", account_id="A1",
                           role="admin"))
    data.signals = {
        "csm_pulse": [
            # Headers match whatever their case, ids are trimmed, enumerations lower-cased: loads.
            {"Account_ID": " A1 ", "Pulse_Date": "2026-06-02", "Sentiment": " Red", "Note": "budget", "Author": "Ana"},
            {"Account_ID": "A1", "Pulse_Date": "2026-06-02", "Sentiment": "red", "Note": "budget", "Author": "Ana"},
            {"Account_ID": "A1", "Pulse_Date": "2026-06-02", "Sentiment": "green", "Note": None, "Author": "Ana"},
            {"Account_ID": "A9", "Pulse_Date": "2026-06-02", "Sentiment": "green"},
            {"Account_ID": "A2", "Pulse_Date": "2026-06-02", "Sentiment": "purple"},
            {"Account_ID": "A2", "Pulse_Date": "2026-06-02", "Sentiment": None},
            {"Account_ID": "A2", "Pulse_Date": "last week", "Sentiment": "green"},
            {"Account_ID": "A2", "Pulse_Date": None, "Sentiment": "green"},
            {"Account_ID": None, "Pulse_Date": "2026-06-02", "Sentiment": "green"},
        ],
        "tickets": [
            ticket("t1", "A1", "2026-06-02 10:00:00", priority="HIGH", status=" Open"),
            ticket("t1", "A1", "2026-06-02 10:00:00", priority="high", status="open"),  # a copy: dropped
            ticket("t1", "A1", "2026-06-02 10:00:00", priority="low", status="open"),
            ticket(None, "A1", "2026-06-02 10:00:00"),
            ticket("t2", None, "2026-06-02 10:00:00"),
            ticket("t3", "A1", "yesterday"),
            ticket("t4", "A1", None),
            ticket("t5", "A1", "2026-06-02 10:00:00", closed_at="2026-06-01 10:00:00", status="closed"),
            ticket("t6", "A9", "2026-06-02 10:00:00"),
            # These load with the unreadable value NULL, and are quarantined too.
            ticket("t7", "A1", "2026-06-02 10:00:00", closed_at="soon", status="closed"),
            ticket("t8", "A1", "2026-06-02 10:00:00", priority="P1"),
            ticket("t9", "A1", "2026-06-02 10:00:00", status="escalated"),
        ],
        "nps_responses": [
            response("u1", None, "2026-06-02 10:00:00", 9),
            response(None, "A2", "2026-06-02 10:00:00", "10"),
            response("qa", None, "2026-06-02 10:00:00", 0),  # an excluded identity: left out, not bad
            response(None, None, "2026-06-02 10:00:00", 9),
            response("u1", None, "noon", 9),
            response("u1", None, None, 9),
            response("u1", None, "2026-06-03 10:00:00", "nine"),
            response("u1", None, "2026-06-04 10:00:00", None),
            response("u1", None, "2026-06-05 10:00:00", 11),
            response("u1", None, "2026-06-05 11:00:00", 7.5),
            response("ghost", None, "2026-06-02 10:00:00", 9),
            response(None, "A9", "2026-06-02 10:00:00", 9),
        ],
        "invoices": [
            invoice("i1", "A1", "2026-06-01", paid_at="2026-06-03"),
            invoice(None, "A1", "2026-06-01"),
            invoice("i2", None, "2026-06-01"),
            invoice("i3", "A1", "June"),
            invoice("i4", "A1", None),
            invoice("i5", "A9", "2026-06-01"),
            invoice("i6", "A1", "2026-06-01", paid_at="paid"),
            invoice("i7", "A1", "2026-06-01", amount="a lot"),
            invoice("i8", "A1", "2026-06-01", amount=-3.0),
        ],
    }
    return data


def test_each_bad_signal_row_goes_to_the_quarantine_with_its_reason(tmp_path):
    pipeline = Pipeline(tmp_path)
    bad_signals().write(pipeline.raw_dir, fmt="csv")
    result = pipeline.materialize(FIRST, dt.date(2026, 6, 3), selection=RAW_ACTIVITY_ASSETS)
    quarantined = pipeline.query("SELECT source_table, source_row, reason FROM raw.quarantine "
                                 "WHERE source_table <> 'users' ORDER BY ALL")
    assert quarantined.values.tolist() == [
        ["accounts", 2, "unparseable_seats_purchased"], ["accounts", 3, "unparseable_arr"],
        ["accounts", 4, "negative_seats_purchased"], ["accounts", 5, "null_id"],
        ["csm_pulse", 3, "conflicting_duplicate"], ["csm_pulse", 4, "unknown_account"],
        ["csm_pulse", 5, "unknown_sentiment"], ["csm_pulse", 6, "unknown_sentiment"],
        ["csm_pulse", 7, "unparseable_pulse_date"], ["csm_pulse", 8, "null_pulse_date"],
        ["csm_pulse", 9, "null_account_id"],
        ["invoices", 2, "null_id"], ["invoices", 3, "null_account_id"], ["invoices", 4, "unparseable_due_date"],
        ["invoices", 5, "null_due_date"], ["invoices", 6, "unknown_account"],
        ["invoices", 7, "unparseable_paid_at"], ["invoices", 8, "unparseable_amount"],
        ["invoices", 9, "negative_amount"],
        ["nps_responses", 4, "null_respondent"], ["nps_responses", 5, "unparseable_responded_at"],
        ["nps_responses", 6, "null_responded_at"], ["nps_responses", 7, "unparseable_score"],
        ["nps_responses", 8, "null_score"], ["nps_responses", 9, "score_out_of_range"],
        ["nps_responses", 10, "score_out_of_range"], ["nps_responses", 11, "unknown_user"],
        ["nps_responses", 12, "unknown_account"],
        ["tickets", 3, "conflicting_duplicate"], ["tickets", 4, "null_id"], ["tickets", 5, "null_account_id"],
        ["tickets", 6, "unparseable_opened_at"], ["tickets", 7, "null_opened_at"],
        ["tickets", 8, "closed_before_opened"], ["tickets", 9, "unknown_account"],
        ["tickets", 10, "unparseable_closed_at"], ["tickets", 11, "unknown_priority"],
        ["tickets", 12, "unknown_status"],
    ]
    # A3's row is in the quarantine (its ARR, the first problem) but loads; A3's and A4's negative
    # seats counts load as NULL.
    seats = pipeline.query("SELECT account_id, coalesce(seats_purchased, -9) FROM raw.accounts ORDER BY 1")
    assert seats.values.tolist() == [["A1", 4.0], ["A2", -9], ["A3", -9], ["A4", -9]]
    assert pipeline.query("SELECT account_id, CAST(pulse_date AS VARCHAR), sentiment, note, author "
                          "FROM raw.csm_pulse").values.tolist() == [["A1", "2026-06-02", "red", "budget", "Ana"]]
    tickets = pipeline.query("SELECT ticket_id, coalesce(priority, '-'), coalesce(status, '-'), closed_at IS NULL "
                             "FROM raw.tickets ORDER BY 1")
    assert tickets.values.tolist() == [["t1", "high", "open", True], ["t7", "normal", "closed", True],
                                       ["t8", "-", "open", True], ["t9", "normal", "-", True]]
    assert pipeline.query("SELECT coalesce(user_id, '-'), coalesce(account_id, '-'), score FROM raw.nps_responses "
                          "ORDER BY ALL").values.tolist() == [["-", "A2", 10], ["u1", "-", 9]]
    assert pipeline.query("SELECT invoice_id, coalesce(CAST(paid_at AS VARCHAR), '-'), coalesce(amount, -9) "
                          "FROM raw.invoices ORDER BY 1").values.tolist() == [
        ["i1", "2026-06-03", 100.0], ["i6", "-", 100.0], ["i7", "-", -9], ["i8", "-", -9]]
    metadata = pipeline.raw_activity_metadata(result)
    assert (metadata["csm_pulse_duplicates_dropped"], metadata["tickets_duplicates_dropped"]) == (1, 1)
    assert metadata["nps_responses_from_excluded_users"] == 1


def test_without_the_optional_tables_their_snapshots_are_empty(tmp_path):
    pipeline = Pipeline(tmp_path)
    portfolio().write(pipeline.raw_dir)
    pipeline.materialize(FIRST, dt.date(2026, 6, 2), selection=RAW_ACTIVITY_ASSETS)
    for table in ("csm_pulse", "tickets", "nps_responses", "invoices"):
        assert pipeline.query(f"SELECT count(*) AS n FROM raw.{table}").n[0] == 0, table


def test_nps_responses_need_a_user_id_or_an_account_id_column(tmp_path):
    pipeline = Pipeline(tmp_path)
    data = portfolio()
    data.signals = {"nps_responses": [dict(responded_at="2026-06-02 10:00:00", score=9)]}
    data.write(pipeline.raw_dir)
    cls, message = pipeline.failure(FIRST, dt.date(2026, 6, 2), selection=RAW_ACTIVITY_ASSETS)
    assert cls == "RawInputError"
    assert message.startswith("raw table 'nps_responses' (") and "lacks required column(s) user_id or account_id" \
        in message


# --- the metrics, by hand ---------------------------------------------------------------------------

def crafted() -> RawData:
    """ACME (seats 4; its power contacts: Ada active, Cy quiet), QUIET (one contact, no usage, no
    seats count), SOLO (one seat, one contact who ran a query on D - 27, W28's first day) and EMPTY
    (no contacts), with activity only on D - 27, D - 3 and D + 1."""
    data = RawData()
    data.accounts = [account("ACME", seats_purchased=4.0), account("QUIET", seats_purchased=0.0),
                     account("SOLO", seats_purchased=1.0), account("EMPTY")]
    user = lambda uid, aid, role="analyst": dict(  # noqa: E731
        user_id=uid, identity=f"{uid}@x.com", joindate="2026-01-01", account_id=aid, role=role)
    data.users = [user("ada", "ACME", "admin"), user("bo", "ACME"), user("cy", "ACME", "champion"),
                  user("zed", "ACME", "executive"), user("moe", "ACME", "admin"), user("dee", "QUIET"),
                  user("sol", "SOLO"),
                  dict(user_id="anon", identity=None, joindate="2026-01-01", account_id=None, role=None)]
    data.migrations = [dict(from_user_id="anon", to_user_id="bo", time="2026-01-02 00:00:00")]
    for n, (uid, offset) in enumerate([("ada", -3), ("bo", -3), ("dee", -3), ("ada", 1), ("sol", -27)]):
        data.sessions.append(dict(session_id=f"s{n}", user_id=uid, time=at(offset, "09:00:00")))
        name = "view_dashboard" if uid == "dee" else "run_query"
        data.events.append(dict(event_id=f"e{n}", user_id=uid, session_id=f"s{n}", time=at(offset, "09:01:00"),
                                event_table_name=name))
    data.signals = {
        "csm_pulse": [
            pulse("ACME", day(-40), "green"),
            pulse("ACME", day(-29), "red"),  # counts on D (29 days old), not on D + 1 (30 days)
            pulse("QUIET", day(1), "green"),  # from D + 1 on only
        ],
        "tickets": [
            ticket("t1", "ACME", at(-27, "00:00:00"), priority="urgent"),  # open, high, opened in W28
            ticket("t2", "ACME", at(-28, "12:00:00"), closed_at=at(0)),  # closed on D: not open; 28 days
            ticket("t3", "ACME", at(-100), closed_at=at(-89), status="closed"),  # closed on W90's first day: 11 days
            ticket("t4", "ACME", at(-100), closed_at=at(-90, "23:00:00"), status="closed"),  # closed before W90
            ticket("t5", "ACME", at(-5), status="solved"),  # closed when, unknown: never open
            ticket("t6", "ACME", at(1, "00:00:00"), priority="high"),  # opened D + 1
            ticket("t7", "ACME", at(-3), closed_at=at(1), priority="high", status="pending"),  # open at D's end
        ],
        "nps_responses": [
            response("ada", None, at(-89, "00:00:00"), 10),  # first instant of W90: promoter
            response("ada", None, at(-90, "23:59:59"), 0),  # just before W90
            response(None, "ACME", at(0, "23:59:59"), 6),  # detractor, the last instant of D
            response(None, "ACME", at(1, "00:00:00"), 0),  # D + 1
            response("anon", None, at(-10), 8),  # passive: counts for bo (merged), so for ACME
            response("ada", None, at(-1), 9),  # promoter
        ],
        "invoices": [
            invoice("i1", "ACME", day(-1)),  # overdue by 1 day
            invoice("i2", "ACME", day(-10), paid_at=day(0)),  # paid on D: not overdue on D
            invoice("i3", "ACME", day(-30), paid_at=day(1), amount=50.0),  # overdue by 30 days on D
            invoice("i4", "ACME", day(0), amount=7.0),  # due on D: not overdue yet
            invoice("i5", "QUIET", day(1)),  # QUIET's first invoice falls due after D
        ],
    }
    return data


@pytest.fixture(scope="module")
def crafted_run(tmp_path_factory) -> Pipeline:
    """Three runs: D - 90 with Pat, another admin of ACME, who then left the users export (from
    D - 89); D - 10; then (after Zed moved to another account, Moe left the users export and Cy
    became a viewer) D and D + 1. Those changes apply from D - 9. The tests read account_metrics
    and the sync table, so the runs stop at the exports."""
    pipeline = Pipeline(tmp_path_factory.mktemp("signals"), sparse=True)
    data = crafted()
    pat = dict(user_id="pat", identity="pat@x.com", joindate="2026-01-01", account_id="ACME", role="admin")
    data.users.append(pat)
    data.write(pipeline.raw_dir)
    pipeline.materialize(day(-90), day(-90), selection=UP_TO_THE_EXPORTS)
    data.users.remove(pat)
    data.write(pipeline.raw_dir)
    pipeline.materialize(day(-10), day(-10), selection=UP_TO_THE_EXPORTS)
    data.accounts.append(account("OTHER"))
    data.users = [u | ({"account_id": "OTHER"} if u["user_id"] == "zed" else {})
                  | ({"role": "viewer"} if u["user_id"] == "cy" else {})
                  for u in data.users if u["user_id"] != "moe"]
    data.write(pipeline.raw_dir)
    pipeline.materialize(day(0), day(1), selection=UP_TO_THE_EXPORTS)
    return pipeline


def metrics(pipeline: Pipeline, account_id: str, offset: int = 0) -> dict:
    return pipeline.row("core.account_metrics", "account_id", account_id, day(offset))


def is_null(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def test_the_pulse_counts_for_its_days_and_its_age_is_kept(crafted_run):
    acme = metrics(crafted_run, "ACME")
    assert (acme["pulse_score"], acme["days_since_pulse"], acme["pulse_sentiment"]) == (0, 29, "red")
    later = metrics(crafted_run, "ACME", 1)  # 30 days old: no longer counts
    assert is_null(later["pulse_score"]) and later["days_since_pulse"] == 30 and is_null(later["pulse_sentiment"])
    quiet = metrics(crafted_run, "QUIET")
    assert is_null(quiet["pulse_score"]) and is_null(quiet["days_since_pulse"])
    quiet_later = metrics(crafted_run, "QUIET", 1)
    assert (quiet_later["pulse_score"], quiet_later["days_since_pulse"], quiet_later["pulse_sentiment"]) == (
        2, 0, "green")


def test_tickets_open_opened_and_time_to_close(crafted_run):
    acme = metrics(crafted_run, "ACME")
    assert acme["open_tickets"] == 2  # t1, t7 (t2 closed on D, t5 solved without a date)
    assert acme["open_high_priority_tickets"] == 2  # t1 urgent, t7 high
    assert acme["tickets_opened_28d"] == 3  # t1 at D-27 00:00, t5, t7 (t2 opened D-28)
    assert acme["median_days_to_close_90d"] == pytest.approx(19.5)  # t2 28 days, t3 11 days (t4 closed D-90)
    later = metrics(crafted_run, "ACME", 1)
    # D+1: t7 closed (after 4 days) and t6 opened, so t1 and t6 are open; W28 is [D-26, D+1] now: t5, t6, t7.
    assert (later["open_tickets"], later["open_high_priority_tickets"], later["tickets_opened_28d"]) == (2, 2, 3)
    assert later["median_days_to_close_90d"] == pytest.approx(16)  # t2 28, t7 4 (t3 closed D-89: out of W90 now)
    quiet = metrics(crafted_run, "QUIET")
    assert (quiet["open_tickets"], quiet["tickets_opened_28d"]) == (0, 0) and is_null(quiet["median_days_to_close_90d"])


def test_nps_over_ninety_days(crafted_run):
    acme = metrics(crafted_run, "ACME")
    # 10 (D-89 00:00), 8 (anon -> bo), 9, 6 (D 23:59:59): 2 promoters, 1 detractor of 4.
    assert (acme["nps_90d"], acme["nps_responses_90d"]) == (25.0, 4)
    later = metrics(crafted_run, "ACME", 1)  # the D-89 promoter leaves W90, D+1's detractor enters
    assert (later["nps_90d"], later["nps_responses_90d"]) == (-25.0, 4)
    empty = metrics(crafted_run, "EMPTY")
    assert is_null(empty["nps_90d"]) and empty["nps_responses_90d"] == 0


def test_overdue_invoices(crafted_run):
    acme = metrics(crafted_run, "ACME")
    assert (acme["overdue_amount"], acme["days_overdue"]) == (150.0, 30)  # i1 100 (1 day), i3 50 (30 days)
    later = metrics(crafted_run, "ACME", 1)  # i3 paid on D+1; i4 now overdue by a day
    assert (later["overdue_amount"], later["days_overdue"]) == (107.0, 2)
    quiet, quiet_later = metrics(crafted_run, "QUIET"), metrics(crafted_run, "QUIET", 1)
    assert is_null(quiet["overdue_amount"]) and is_null(quiet["days_overdue"])  # nothing due yet
    assert (quiet_later["overdue_amount"], quiet_later["days_overdue"]) == (0.0, 0)  # due today
    assert is_null(metrics(crafted_run, "EMPTY")["overdue_amount"])


def test_license_utilisation_and_heaps_rules(crafted_run):
    acme, quiet, empty = (metrics(crafted_run, a) for a in ("ACME", "QUIET", "EMPTY"))
    assert acme["license_utilisation"] == 0.5  # ada and bo active, 4 seats
    assert is_null(quiet["license_utilisation"]) and is_null(empty["license_utilisation"])  # 0 seats; none known
    assert (acme["is_active_28d"], acme["at_most_one_kpi_user_28d"], acme["is_inactive_90d"]) == (True, False, False)
    # QUIET's one contact viewed a dashboard, which is not usage.
    assert (quiet["is_active_28d"], quiet["at_most_one_kpi_user_28d"], quiet["is_inactive_90d"]) == (
        False, True, True)
    assert (empty["is_active_28d"], empty["at_most_one_kpi_user_28d"]) == (False, True)


def test_heaps_rules_and_utilisation_at_the_edge_of_w28(crafted_run):
    solo, later = metrics(crafted_run, "SOLO"), metrics(crafted_run, "SOLO", 1)
    # Sol's one query on D - 27 is in W28 on D (its first day), out of it on D + 1.
    assert (solo["is_active_28d"], solo["at_most_one_kpi_user_28d"], solo["license_utilisation"]) == (True, True, 1.0)
    assert (later["is_active_28d"], later["at_most_one_kpi_user_28d"], later["license_utilisation"]) == (
        False, True, 0.0)
    assert not solo["is_inactive_90d"] and not later["is_inactive_90d"]


def test_power_contacts_active_and_left(crafted_run):
    acme = metrics(crafted_run, "ACME")
    # Ada (admin) is active; Cy is a viewer now; Zed moved to OTHER and Moe left the export on D-9;
    # Pat left it on D-89, W90's first day.
    assert (acme["has_active_power_contact"], acme["power_contacts_active_28d"]) == (True, 1)
    assert acme["power_contacts_left_90d"] == 3  # Pat, Zed and Moe; Cy's change of role is not leaving
    assert metrics(crafted_run, "ACME", 1)["power_contacts_left_90d"] == 2  # Pat's leaving is out of W90
    assert metrics(crafted_run, "ACME", -10)["power_contacts_left_90d"] == 1  # Pat; Zed and Moe are still there
    assert metrics(crafted_run, "ACME", -90)["power_contacts_left_90d"] == 0  # Pat is still there
    assert not metrics(crafted_run, "QUIET")["has_active_power_contact"]


def test_the_sync_table_carries_the_signals(crafted_run):
    row = crafted_run.row("export.account_health", "account_id", "ACME", day(0))
    assert (row["pulse_sentiment"], row["pulse_score"], row["pulse_value"], row["pulse_points"]) == ("red", 0, 0, 0)
    assert (row["open_tickets"], row["overdue_amount"], row["nps_90d"]) == (2, 150.0, 25.0)


# --- a pulse in the score ---------------------------------------------------------------------------

@pytest.mark.slow
def test_one_red_pulse_lowers_one_accounts_score_on_the_days_it_counts_and_nothing_else(tmp_path):
    spec = SampleSpec(accounts=12, days=45, seed=5)
    pipeline = Pipeline(tmp_path)
    generate_sample(pipeline.raw_dir, spec)
    (pipeline.raw_dir / "csm_pulse.parquet").unlink()  # no pulse at all: the score of every account is usage's
    pipeline.materialize(spec.start, spec.end)
    before = sync_table(pipeline.root / "warehouse.duckdb").set_index(["account_id", "snapshot_date"])
    assert before["pulse_sentiment"].isna().all() and before["pulse_points"].isna().all()

    pulse_day = spec.start + dt.timedelta(days=20)
    healthy = before.xs(pd.Timestamp(pulse_day), level="snapshot_date")
    healthy = healthy[(healthy["health_band"] == "healthy") & (healthy["status"] == "paying")]
    chosen = healthy.index[0]
    pd.DataFrame([pulse(chosen, pulse_day, "red", note="budget cut", author="Ana")]).astype(
        {"pulse_date": "datetime64[s]"}).to_parquet(pipeline.raw_dir / "csm_pulse.parquet", index=False)
    pipeline.materialize(spec.start, spec.end)
    after = sync_table(pipeline.root / "warehouse.duckdb").set_index(["account_id", "snapshot_date"])

    counted = [pd.Timestamp(pulse_day + dt.timedelta(days=n)) for n in range(SETTINGS.pulse_days)
               if pulse_day + dt.timedelta(days=n) <= spec.end]
    same = after["health_score"].eq(before["health_score"]) | (after["health_score"].isna()
                                                               & before["health_score"].isna())
    moved = after.index[~same]
    assert sorted(moved) == [(chosen, day) for day in counted]
    assert (after.loc[moved, "health_score"] < before.loc[moved, "health_score"]).all()
    assert (after.loc[moved, "pulse_sentiment"] == "red").all() and (after.loc[moved, "pulse_points"] == 0).all()
    assert after.drop(index=moved)["pulse_sentiment"].isna().all()
    assert (after.loc[moved, "days_since_pulse"].tolist() == list(range(len(counted))))
