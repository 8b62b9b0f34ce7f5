"""The month-end checkpoints of a contact's recency (core.contact_recency), which bound how much of
the fact a daily run reads before its windows: what they hold, by hand, and that which of them are
stored changes only speed, never a value."""

from __future__ import annotations

import datetime as dt

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from health_pipeline.assets.contact_metrics.asset import SQL, keep_recency_checkpoints, month_ends, usage_events
from health_pipeline.contract import event_count_column
from health_pipeline.scorecard.parser import load_config

CONFIG = load_config()
USAGE = CONFIG.usage_events[0]  # run_query
OTHER = next(e for e in CONFIG.tracked_events if e not in CONFIG.usage_events)


def fact(conn: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    """core.daily_contact_activity from (day, user, sessions, usage events, other events,
    first_session_activated) rows; last_seen_at is noon of the day."""
    counts = ", ".join(f'CAST(0 AS BIGINT) AS "{event_count_column(e)}"' for e in CONFIG.tracked_events)
    conn.execute("CREATE SCHEMA IF NOT EXISTS core")
    conn.execute(f"""CREATE OR REPLACE TABLE core.daily_contact_activity AS
                     SELECT DATE '2026-01-01' AS activity_date, 'u' AS user_id, CAST(0 AS BIGINT) AS sessions,
                            CAST(0 AS BIGINT) AS events, TIMESTAMP '2026-01-01' AS last_seen_at, {counts},
                            CAST(NULL AS BOOLEAN) AS first_session_activated LIMIT 0""")
    for day, user, sessions, usage, other, activated in rows:
        conn.execute(f"""INSERT INTO core.daily_contact_activity BY NAME
                         SELECT $day AS activity_date, $user AS user_id, $sessions AS sessions,
                                $usage + $other AS events, $day::DATE + INTERVAL 12 HOUR AS last_seen_at,
                                $usage AS "{event_count_column(USAGE)}", $other AS "{event_count_column(OTHER)}",
                                $activated AS first_session_activated""",
                     {"day": day, "user": user, "sessions": sessions, "usage": usage, "other": other,
                      "activated": activated if sessions else None})


def checkpoint(conn: duckdb.DuckDBPyConnection, month_end: dt.date) -> dict[str, tuple]:
    SQL.run(conn, "contact_recency_shape")
    SQL.run(conn, "contact_recency_checkpoint", {"month_end": month_end, "usage_events": usage_events(CONFIG)},
            config=CONFIG)
    return stored(conn, month_end)


def stored(conn: duckdb.DuckDBPyConnection, month_end: dt.date) -> dict[str, tuple]:
    return {user: rest for user, *rest in conn.execute(
        "SELECT user_id, CAST(last_seen_at AS VARCHAR), last_usage_date, first_session_date, first_session_activated "
        "FROM core.contact_recency WHERE month_end = $m", {"m": month_end}).fetchall()}


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def test_month_ends():
    assert list(month_ends(d("2025-06-01"), d("2025-09-30"))) == [d("2025-06-30"), d("2025-07-31"),
                                                                  d("2025-08-31"), d("2025-09-30")]
    assert list(month_ends(d("2024-01-31"), d("2024-03-01"))) == [d("2024-01-31"), d("2024-02-29")]  # leap year
    assert list(month_ends(d("2025-06-30"), d("2025-06-29"))) == []


def test_a_checkpoint_holds_each_contacts_recency_up_to_its_month_end():
    with duckdb.connect() as conn:
        fact(conn, [
            # a: first session 01-05 (activated), usage on 01-20, seen last on 02-03 (not in January's).
            ("2026-01-05", "a", 1, 0, 2, True), ("2026-01-20", "a", 0, 3, 0, None), ("2026-02-03", "a", 1, 1, 0, False),
            # b: events without a session on 01-31, a first session not activated in February.
            ("2026-01-31", "b", 0, 0, 1, None), ("2026-02-10", "b", 2, 0, 0, False),
            ("2026-03-01", "c", 1, 1, 0, True),  # after both month ends
        ])
        january = checkpoint(conn, d("2026-01-31"))
        assert january == {"a": ["2026-01-20 12:00:00", d("2026-01-20"), d("2026-01-05"), True],
                           "b": ["2026-01-31 12:00:00", None, None, None]}
        # February's builds on January's and adds the fact's February days.
        assert checkpoint(conn, d("2026-02-28")) == {
            "a": ["2026-02-03 12:00:00", d("2026-02-03"), d("2026-01-05"), True],
            "b": ["2026-02-10 12:00:00", None, d("2026-02-10"), False]}


def test_keep_builds_every_month_end_before_the_latest_days_windows_once(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        # The fact's days 2026-01-10 .. 2026-05-15: the windows up to 05-15 reach back to 02-15
        # (89 days), so the month ends before that are 01-31 only.
        fact(conn, [("2026-01-10", "a", 1, 1, 0, True), ("2026-05-15", "a", 1, 1, 0, False)])
        assert keep_recency_checkpoints(conn, CONFIG) == 1
        assert stored(conn, d("2026-01-31")) == {"a": ["2026-01-10 12:00:00", d("2026-01-10"), d("2026-01-10"), True]}
        assert keep_recency_checkpoints(conn, CONFIG) == 0  # kept: nothing to build again
        fact(conn, [("2026-01-10", "a", 1, 1, 0, True), ("2026-06-01", "a", 0, 1, 0, None)])
        assert keep_recency_checkpoints(conn, CONFIG) == 1  # 02-28 (<= 06-01 - 90 = 03-03)
        month_ends_stored = conn.execute("SELECT DISTINCT month_end FROM core.contact_recency ORDER BY 1").fetchall()
        assert month_ends_stored == [(d("2026-01-31"),), (d("2026-02-28"),)]


fact_rows = st.lists(
    st.tuples(st.integers(0, 150), st.sampled_from("abcd"), st.integers(0, 2), st.integers(0, 2), st.integers(0, 1),
              st.booleans()),
    max_size=40, unique_by=lambda row: (row[0], row[1]),
)


@settings(max_examples=40, deadline=None)
@given(rows=fact_rows, kept=st.lists(st.booleans(), min_size=5, max_size=5))
def test_which_checkpoints_are_stored_changes_no_value(rows, kept):
    """Each month end's checkpoint is the same whether it is built on the fact alone or on any set of
    earlier checkpoints: the same values as the fact's days up to it, grouped directly."""
    start = d("2026-01-01")
    rows = [((start + dt.timedelta(days=day)).isoformat(), *rest) for day, *rest in rows]
    ends = list(month_ends(start, start + dt.timedelta(days=150)))  # 01-31 .. 05-31
    with duckdb.connect() as conn:
        fact(conn, rows)
        for month_end, keep in zip(ends, kept):
            chained = checkpoint(conn, month_end)
            if not keep:
                conn.execute("DELETE FROM core.contact_recency WHERE month_end = $m", {"m": month_end})
            direct = {user: rest for user, *rest in conn.execute(
                f"""SELECT user_id, CAST(max(last_seen_at) AS VARCHAR),
                           max(activity_date) FILTER (WHERE "{event_count_column(USAGE)}" > 0),
                           min(activity_date) FILTER (WHERE sessions > 0),
                           arg_min(first_session_activated, activity_date) FILTER (WHERE sessions > 0)
                    FROM core.daily_contact_activity WHERE activity_date <= $m GROUP BY user_id""",
                {"m": month_end}).fetchall()}
            assert chained == direct
