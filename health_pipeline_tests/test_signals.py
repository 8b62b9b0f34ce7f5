"""The signals beyond product usage: the optional csm_pulse, tickets, nps_responses and invoices
tables and accounts.seats_purchased, read and quarantined like the other exports; the metrics
they make, worked out by hand at their windows' edges; Heap's three rules and the Power metrics.

Snapshot date D = 2026-08-31, so W28 = [08-04, 08-31] and W90 = [06-03, 08-31]; the run covers
D + 1 too, which must not leak into D.
"""

from __future__ import annotations

import datetime as dt

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline_tests.conftest import Pipeline, RawData
from health_pipeline_tests.test_history import FIRST, account, portfolio

D = dt.date(2026, 8, 31)


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
    row without an id, and one bad row of each kind per signal table, beside rows that load."""
    data = portfolio([account("A1", seats_purchased=4), account("A2", owner="Ben", seats_purchased="many"),
                      account("A3", arr="$5", seats_purchased=-1), account(None, name="No id")])
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
        ["accounts", 4, "null_id"],
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
    # A3's row is in the quarantine (its ARR) but loads; its negative seats count loads as NULL.
    seats = pipeline.query("SELECT account_id, coalesce(seats_purchased, -9) FROM raw.accounts ORDER BY 1")
    assert seats.values.tolist() == [["A1", 4.0], ["A2", -9], ["A3", -9]]
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
