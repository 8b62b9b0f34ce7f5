"""Bad raw input: each kind fails the run with a named error, or lands in raw.quarantine with its reason.

Every case starts from the same small valid export (one account, two users, events and sessions
on two days) and adds or breaks one thing. The valid rows must always still load.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.assets.raw_activity.asset import extract as extract_range
from health_pipeline.raw_input import RawInputError
from health_pipeline.resources import Warehouse
from health_pipeline.scorecard.parser import load_config
from health_pipeline.sources import FolderSource
from health_pipeline_tests.conftest import Pipeline, RawData

DAY, NEXT = "2026-08-10", "2026-08-11"


def valid() -> RawData:
    data = RawData()
    data.accounts = [dict(account_id="A1", name="Acme", owner="Ana", plan="growth", arr=50000.0,
                          vertical="saas", customer_since="2024-01-01", status="paying")]
    data.users = [
        dict(user_id="u1", identity="alice@acme.com", joindate="2026-01-01", account_id="A1", role="admin"),
        dict(user_id="qa", identity="qa@garbage.io", joindate="2026-01-01", account_id="A1", role="admin"),
    ]
    data.events = [
        dict(event_id="1", user_id="u1", session_id="1", time=f"{DAY} 09:00:00", event_table_name="run_query"),
        dict(event_id="2", user_id="u1", session_id="2", time=f"{NEXT} 09:00:00", event_table_name="save_report"),
        dict(event_id="3", user_id="qa", session_id="3", time=f"{DAY} 10:00:00", event_table_name="run_query"),
    ]
    data.sessions = [dict(session_id="1", user_id="u1", time=f"{DAY} 08:59:00"),
                     dict(session_id="2", user_id="u1", time=f"{NEXT} 08:59:00")]
    return data


def event(event_id, user_id="u1", time=f"{DAY} 12:00:00", name="run_query") -> dict:
    """An event row; ids are text, as Heap exports them (an int column with a null would be a float)."""
    event_id = None if event_id is None else str(event_id)
    return dict(event_id=event_id, user_id=user_id, session_id="1", time=time, event_table_name=name)


def extract(pipeline: Pipeline, data: RawData, fmt: str = "parquet") -> dict:
    """Write `data`, run raw_activity for DAY..NEXT, and return its metadata."""
    data.write(pipeline.raw_dir, fmt)
    result = pipeline.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    return Pipeline.raw_activity_metadata(result)


def quarantined(pipeline: Pipeline) -> list[tuple]:
    """(source_table, reason, partition_date or None, source_row, row) for every quarantine row."""
    frame = pipeline.query("SELECT * FROM raw.quarantine ORDER BY source_table, reason, partition_date, source_row")
    return [(r.source_table, r.reason, None if pd.isna(r.partition_date) else str(r.partition_date.date()),
             r.source_row, json.loads(r.row_json)) for r in frame.itertuples()]


# --- cases side by side: one run for every row-level case that reports no run-wide figure ---------
#
# Each case adds its rows to its own copy of the valid export, its ids prefixed with its name, so
# that the cases' rows sit side by side in one raw folder (one run per file format) without
# meeting. A case then reads back only its own rows: the quarantine rows from its own rows of
# each file, numbered from its first row there, and the raw tables' rows under its ids, each
# with the prefix taken off. A case whose assertion is a run-wide figure (the metadata's counts)
# or whose input is the folder's layout, a setting or a failed run has a run of its own.

ID_COLUMNS = ("event_id", "user_id", "session_id", "account_id", "from_user_id", "to_user_id")
FILES = {"events": "all_events", "sessions": "sessions", "users": "users", "accounts": "accounts",
         "migrations": "user_migrations"}
TABLE_KEYS = {"raw.events": "event_id", "raw.sessions": "session_id", "raw.accounts": "account_id",
              "raw.contacts": "user_id"}


@dataclass
class Case:
    """What one case reads back of a run: all of it for a run of its own, else its own rows."""

    pipeline: Pipeline
    prefix: str = ""
    rows: dict[str, range] | None = None  # per raw file, the case's rows in it (numbered from 1)

    def _strip(self, value):
        return value.removeprefix(self.prefix) if isinstance(value, str) else value

    def quarantined(self) -> list[tuple]:
        """As quarantined(), for the case's rows alone, each numbered within the case's rows."""
        if self.rows is None:
            return quarantined(self.pipeline)
        return [(table, reason, day, row - self.rows[table].start + 1,
                 {k: self._strip(v) for k, v in values.items()})
                for table, reason, day, row, values in quarantined(self.pipeline) if row in self.rows[table]]

    def table(self, name: str) -> pd.DataFrame:
        """The rows of raw table `name` under the case's ids, in the order of their key, ids as the case wrote them."""
        key = TABLE_KEYS[name]
        frame = self.pipeline.query(f"SELECT * FROM {name} WHERE starts_with({key}, $prefix) ORDER BY {key}",
                                    {"prefix": self.prefix})
        for column in frame.select_dtypes(include=["object", "str"]):
            frame[column] = frame[column].map(self._strip)
        return frame


def side_by_side(pipeline: Pipeline, cases: dict[str, RawData], fmt: str) -> dict[str, Case]:
    """Write every case's rows into one raw folder, their ids prefixed with the case's name, and
    run raw_activity on it once."""
    together, cases_rows = RawData(), {}
    for name, data in cases.items():
        prefix = f"{name}:"
        cases_rows[name] = {}
        for field_name, file in FILES.items():
            rows, mine = getattr(together, field_name), getattr(data, field_name)
            cases_rows[name][file] = range(len(rows) + 1, len(rows) + len(mine) + 1)
            rows += [{k: prefix + v if k in ID_COLUMNS and v is not None else v for k, v in row.items()}
                     for row in mine]
    extract(pipeline, together, fmt)
    return {name: Case(pipeline, f"{name}:", rows) for name, rows in cases_rows.items()}


def assert_valid_rows_loaded(case: Case) -> None:
    events = case.table("raw.events")
    assert list(events["event_id"]) == ["1", "2"] and set(events["user_id"]) == {"u1"}
    assert list(case.table("raw.sessions")["session_id"]) == ["1", "2"]
    assert list(case.table("raw.accounts")["account_id"]) == ["A1"]


def test_valid_export_quarantines_nothing(pipeline):
    meta = extract(pipeline, valid())
    assert_valid_rows_loaded(Case(pipeline))
    assert quarantined(pipeline) == []
    # The excluded identity's event is not bad input: it is counted apart from the quarantine.
    assert meta["events_from_excluded_users"] == 1 and meta["events_quarantined"] == 0
    assert meta["quarantined_rows"] == 0


# --- row-level problems: quarantined with a reason; everything valid still loads -------------

def test_event_with_null_user_id(pipeline):
    data = valid()
    data.events.append(event(10, user_id=None))
    meta = extract(pipeline, data)
    assert_valid_rows_loaded(Case(pipeline))
    [(table, reason, day, row, values)] = quarantined(pipeline)
    assert (table, reason, day, row) == ("all_events", "null_user_id", DAY, 4)  # the 4th row of the file
    assert values == {"event_id": "10", "user_id": None, "session_id": "1", "time": f"{DAY} 12:00:00",
                      "event_table_name": "run_query"}
    assert meta["quarantined.all_events.null_user_id"] == 1 and meta["events_quarantined"] == 1


def null_ids(data: RawData) -> None:
    data.events.append(event(None))
    data.sessions.append(dict(session_id=None, user_id="u1", time=f"{NEXT} 10:00:00"))


def test_event_and_session_with_null_id(cases):
    case = cases[null_ids]
    assert_valid_rows_loaded(case)
    assert [q[:4] for q in case.quarantined()] == [("all_events", "null_id", DAY, 4),
                                                      ("sessions", "null_id", NEXT, 3)]


def unparseable_times(data: RawData) -> None:
    data.events.append(event(10, time="yesterday-ish"))
    data.sessions.append(dict(session_id="9", user_id="u1", time="2026-13-45 25:00:00"))


def test_unparseable_time_has_no_day(cases):
    case = cases[unparseable_times]
    assert_valid_rows_loaded(case)
    assert [q[:4] for q in case.quarantined()] == [("all_events", "unparseable_time", None, 4),
                                                   ("sessions", "unparseable_time", None, 3)]
    assert case.quarantined()[0][4]["time"] == "yesterday-ish"  # the value as read


def null_time(data: RawData) -> None:
    data.events.append(event(10, time=None))


def test_null_time(cases):
    assert [q[:4] for q in cases[null_time].quarantined()] == [("all_events", "null_time", None, 4)]


def test_event_of_unknown_user(pipeline):
    data = valid()
    data.events.append(event(10, user_id="ghost"))
    data.sessions.append(dict(session_id="9", user_id="ghost", time=f"{DAY} 11:00:00"))
    meta = extract(pipeline, data)
    assert_valid_rows_loaded(Case(pipeline))
    assert [q[:3] for q in quarantined(pipeline)] == [("all_events", "unknown_user", DAY),
                                                      ("sessions", "unknown_user", DAY)]
    assert meta["events_quarantined"] == meta["sessions_quarantined"] == 1


def user_of_an_unknown_account(data: RawData) -> None:
    data.users.append(dict(user_id="u9", identity="nina@else.com", joindate="2026-01-01", account_id="NOPE"))
    data.events.append(event(10, user_id="u9"))


def test_user_whose_account_is_not_in_accounts(cases):
    """The user is quarantined, and its activity is quarantined as belonging to a quarantined user."""
    case = cases[user_of_an_unknown_account]
    assert_valid_rows_loaded(case)
    assert [q[:4] for q in case.quarantined()] == [("all_events", "quarantined_user", DAY, 4),
                                                   ("users", "unknown_account", None, 3)]
    assert "u9" not in set(case.table("raw.contacts")["user_id"])


def user_without_account(data: RawData) -> None:
    data.users.append(dict(user_id="u9", identity="nina@else.com", joindate="2026-01-01", account_id=None))


def test_user_with_null_account_id(cases):
    assert [q[:3] for q in cases[user_without_account].quarantined()] == [("users", "null_account_id", None)]


def anonymous_user_merged(data: RawData) -> None:
    data.users.append(dict(user_id="anon", identity=None, joindate="2026-01-01", account_id=None))
    data.migrations = [dict(from_user_id="anon", to_user_id="u1", time="2026-01-02 00:00:00")]
    data.events.append(event(10, user_id="anon"))


def test_anonymous_user_merged_into_a_contact_is_not_quarantined(cases):
    """An id with no account that was merged into a contact takes the contact's account."""
    case = cases[anonymous_user_merged]
    assert case.quarantined() == []
    events = case.table("raw.events")
    assert events.loc[events["event_id"] == "10", "user_id"].tolist() == ["u1"]


def test_event_time_beyond_the_future_tolerance(tmp_path):
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    soon, later = ((now + dt.timedelta(hours=h)).strftime("%Y-%m-%d %H:%M:%S") for h in (2, 30))
    data = valid()
    data.events += [event(10, time=soon), event(11, time=later), event(12, time="2999-01-01 00:00:00")]
    default = Pipeline(tmp_path / "default")   # 24 hours of tolerance
    extract(default, data)
    assert [(q[1], q[2], q[4]["event_id"]) for q in quarantined(default)] == [
        ("future_time", None, "11"), ("future_time", None, "12")]
    strict = Pipeline(tmp_path / "strict", future_tolerance_hours=1)
    extract(strict, data)
    assert [q[4]["event_id"] for q in quarantined(strict)] == ["10", "11", "12"]


def negative_arr(data: RawData) -> None:
    data.accounts.append(dict(account_id="A2", name="Neg", owner="Ben", plan="starter", arr=-10.0,
                              vertical="media", customer_since="2024-01-01", status="paying"))
    data.users.append(dict(user_id="u2", identity="bo@neg.com", joindate="2026-01-01", account_id="A2"))
    data.events.append(event(10, user_id="u2"))


def test_negative_arr_keeps_the_account_and_its_users_with_arr_null(cases):
    """A bad attribute is quarantined, not the paying account: it stays in the sync table."""
    case = cases[negative_arr]
    assert [q[:3] for q in case.quarantined()] == [("accounts", "negative_arr", None)]
    accounts = case.table("raw.accounts")
    account = accounts[accounts["account_id"] == "A2"].iloc[0]
    assert pd.isna(account["arr"]) and account["status"] == "paying"
    assert "u2" in set(case.table("raw.contacts")["user_id"])
    assert "10" in set(case.table("raw.events")["event_id"])


def unparseable_arr(data: RawData) -> None:
    for account_id, arr in (("A2", "lots"), ("A3", "1e400"), ("A4", ""), ("A5", "1,200.50"), ("A6", "$150000")):
        data.accounts.append(dict(account_id=account_id, name=account_id, owner="Ben", plan="starter", arr=arr,
                                  vertical="media", customer_since="2024-01-01", status="paying"))


def test_unparseable_and_infinite_arr_keep_the_account_with_arr_null(cases):
    case = cases[unparseable_arr]
    assert [(q[1], q[4]["account_id"]) for q in case.quarantined()] == [
        ("unparseable_arr", "A2"), ("unparseable_arr", "A3"), ("unparseable_arr", "A5"), ("unparseable_arr", "A6")]
    # Every account loads; an account without arr (an empty CSV field) is valid and not quarantined.
    accounts = case.table("raw.accounts")
    assert list(accounts["account_id"]) == ["A1", "A2", "A3", "A4", "A5", "A6"]
    assert accounts["arr"][1:].isna().all()


def test_accounts_with_null_id_and_conflicting_duplicates(pipeline):
    data = valid()
    acme = data.accounts[0]
    data.accounts += [
        dict(acme),                                  # an identical copy: a duplicate, not bad input
        dict(acme, owner="Someone Else"),            # the same id saying something else
        dict(acme, account_id=None, name="Nameless"),
    ]
    meta = extract(pipeline, data)
    assert [(q[1], q[3]) for q in quarantined(pipeline)] == [("conflicting_duplicate", 3), ("null_id", 4)]
    assert meta["accounts_duplicates_dropped"] == 1
    assert pipeline.query("SELECT owner FROM raw.accounts")["owner"].tolist() == ["Ana"]


def bad_users(data: RawData) -> None:
    data.users += [
        dict(user_id=None, identity="x@acme.com", joindate="2026-01-01", account_id="A1"),
        dict(user_id="u3", identity="cy@acme.com", joindate="the first of may", account_id="A1"),
        dict(data.users[0], role="viewer"),
    ]


def test_users_with_null_id_unparseable_joindate_and_conflicting_duplicates(cases):
    case = cases[bad_users]
    assert [(q[1], q[3]) for q in case.quarantined()] == [
        ("conflicting_duplicate", 5), ("null_id", 3), ("unparseable_joindate", 4)]
    assert_valid_rows_loaded(case)


def null_event_name(data: RawData) -> None:
    data.events.append(event(10, name=None))


def test_event_with_null_event_name(cases):
    assert [q[:3] for q in cases[null_event_name].quarantined()] == [("all_events", "null_event_name", DAY)]


def bad_merges(data: RawData) -> None:
    data.migrations = [dict(from_user_id="x", to_user_id=None, time="2026-01-02 00:00:00"),
                       dict(from_user_id="u1", to_user_id="u1", time="2026-01-02 00:00:00")]


def test_bad_merges(cases):
    case = cases[bad_merges]
    assert [(q[0], q[1]) for q in case.quarantined()] == [("user_migrations", "null_id"),
                                                          ("user_migrations", "self_merge")]
    assert_valid_rows_loaded(case)


def test_duplicates_are_counted_not_quarantined(pipeline):
    data = valid()
    data.events.append(dict(data.events[0]))
    data.sessions.append(dict(data.sessions[0]))
    meta = extract(pipeline, data)
    assert quarantined(pipeline) == []
    assert meta["events_duplicates_dropped"] == 1 and meta["sessions_duplicates_dropped"] == 1


def test_rerun_replaces_the_range_quarantine_rows(pipeline):
    data = valid()
    data.events += [event(10, user_id="ghost"), event(11, user_id="ghost", time=f"{NEXT} 12:00:00"),
                    event(12, time="2999-01-01 00:00:00")]
    extract(pipeline, data)
    pipeline.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    pipeline.materialize(NEXT, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert [(q[1], q[2]) for q in quarantined(pipeline)] == [
        ("future_time", None), ("unknown_user", DAY), ("unknown_user", NEXT)]
    # The source is fixed: a rerun of one day clears that day's rows and the undated ones.
    data.events = [e for e in data.events if e["event_id"] not in ("11", "12")]
    data.write(pipeline.raw_dir)
    pipeline.materialize(NEXT, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert [(q[1], q[2]) for q in quarantined(pipeline)] == [("unknown_user", DAY)]


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[Callable, Case]:
    """The row-level cases that report no run-wide figure, side by side: one run per file format."""
    by_format = {"parquet": [null_ids, user_of_an_unknown_account, user_without_account, anonymous_user_merged,
                             negative_arr, null_event_name, bad_merges],
                 "csv": [unparseable_times, null_time, unparseable_arr, bad_users]}
    out = {}
    for fmt, adders in by_format.items():
        exports = {}
        for add_rows in adders:
            exports[add_rows.__name__] = data = valid()
            add_rows(data)
        ran = side_by_side(Pipeline(tmp_path_factory.mktemp(fmt)), exports, fmt)
        out.update((add_rows, ran[add_rows.__name__]) for add_rows in adders)
    return out


# --- structural problems: the run fails with a message naming the table, the file and the column --

def test_missing_required_column(pipeline):
    valid().write(pipeline.raw_dir)
    events = pd.read_parquet(pipeline.raw_dir / "all_events.parquet").drop(columns="event_table_name")
    events.to_parquet(pipeline.raw_dir / "all_events.parquet")
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert cls == "RawInputError"
    assert message.startswith(f"raw table 'all_events' ({pipeline.raw_dir / 'all_events.parquet'}) "
                              "lacks required column(s) event_table_name")


def test_unreadable_file(pipeline):
    valid().write(pipeline.raw_dir)
    (pipeline.raw_dir / "sessions.parquet").write_bytes(b"PAR1 this is not parquet")
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert cls == "RawInputError"
    assert message.startswith(f"raw table 'sessions' ({pipeline.raw_dir / 'sessions.parquet'}) cannot be read")


def test_column_of_a_type_that_cannot_be_cast(pipeline):
    """Epoch-millisecond integers are not timestamps: every row would be unparseable."""
    valid().write(pipeline.raw_dir)
    events = pd.read_parquet(pipeline.raw_dir / "all_events.parquet")
    events["time"] = events["time"].astype("int64") // 1_000_000
    events.to_parquet(pipeline.raw_dir / "all_events.parquet")
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert (cls, message) == ("RawInputError", f"raw table 'all_events' ({pipeline.raw_dir / 'all_events.parquet'}) "
                                               "column 'time' has type BIGINT, which cannot be read as TIMESTAMPTZ")


def test_floating_point_ids_are_refused(pipeline):
    valid().write(pipeline.raw_dir)
    users = pd.read_parquet(pipeline.raw_dir / "users.parquet")
    users["user_id"] = [1.0, 2.0]
    users.to_parquet(pipeline.raw_dir / "users.parquet")
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert message == (f"raw table 'users' ({pipeline.raw_dir / 'users.parquet'}) column 'user_id' has type "
                       "DOUBLE, which cannot be read as VARCHAR")


def test_missing_table(pipeline):
    valid().write(pipeline.raw_dir)
    (pipeline.raw_dir / "accounts.parquet").unlink()
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert cls == "RawInputError" and message.startswith(f"raw table 'accounts' not found in {pipeline.raw_dir}")


def _as_daily_folder(pipeline: Pipeline, data: RawData) -> None:
    """Write all_events as a folder of one parquet file per day, the layout for large exports."""
    data.write(pipeline.raw_dir)
    events = pd.read_parquet(pipeline.raw_dir / "all_events.parquet")
    (pipeline.raw_dir / "all_events.parquet").unlink()
    (pipeline.raw_dir / "all_events").mkdir()
    for day, rows in events.groupby(events["time"].dt.date):
        rows.to_parquet(pipeline.raw_dir / "all_events" / f"{day}.parquet", index=False)


def test_one_file_of_a_folder_lacks_a_column(pipeline):
    _as_daily_folder(pipeline, valid())
    broken = pipeline.raw_dir / "all_events" / f"{NEXT}.parquet"
    pd.read_parquet(broken).drop(columns="user_id").to_parquet(broken, index=False)
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert (cls, message) == ("RawInputError", f"raw table 'all_events' ({broken}) lacks required column(s) "
                                               "user_id; it has event_id, event_table_name, session_id, time")


def test_one_file_of_a_folder_has_a_column_of_the_wrong_type(pipeline):
    _as_daily_folder(pipeline, valid())
    broken = pipeline.raw_dir / "all_events" / f"{NEXT}.parquet"
    rows = pd.read_parquet(broken)
    rows["time"] = rows["time"].astype("int64")
    rows.to_parquet(broken, index=False)
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert cls == "RawInputError"
    assert message.startswith(f"raw table 'all_events' ({broken}) column 'time' has type")


def test_folder_layout_quarantines_with_the_file_of_the_row(pipeline):
    data = valid()
    data.events.append(event(10, user_id="ghost", time=f"{NEXT} 12:00:00"))
    _as_daily_folder(pipeline, data)
    pipeline.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    [(table, reason, day, row, values)] = quarantined(pipeline)
    assert (reason, day, row) == ("unknown_user", NEXT, 2)
    file = pipeline.query("SELECT source_file FROM raw.quarantine")["source_file"][0]
    assert file == str(pipeline.raw_dir / "all_events" / f"{NEXT}.parquet")
    assert pd.read_parquet(file).iloc[row - 1]["event_id"] == "10"


# --- generated garbage: quarantined, or a named error; never an unnamed traceback -----------------

NOW = dt.datetime(2026, 11, 22, 12, 0)
IN_RANGE = st.datetimes(dt.datetime(2026, 8, 10), dt.datetime(2026, 8, 11, 23, 59, 59)).map(
    lambda t: t.strftime("%Y-%m-%d %H:%M:%S"))
GARBAGE = st.text(st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=10).filter(
    lambda s: s == s.strip() and not s.startswith("valid"))
HUGE = st.integers(-(10**30), 10**30).map(str)
TIMES = st.one_of(st.none(), GARBAGE, HUGE, IN_RANGE, IN_RANGE.map(lambda t: t.replace(" ", "T") + "+02:00"),
                  st.just("2999-01-01 00:00:00"), st.just("2020-01-01 00:00:00"))
IDS = st.one_of(st.none(), GARBAGE, HUGE)
EVENT_USERS = st.one_of(st.none(), GARBAGE, st.sampled_from(["valid-u", "valid-qa", "ghost"]))
COLUMNS = {
    "users": ["user_id", "identity", "joindate", "account_id", "role"],
    "accounts": ["account_id", "name", "owner", "plan", "arr", "vertical", "customer_since", "status"],
    "sessions": ["session_id", "user_id", "time"],
    "all_events": ["event_id", "user_id", "session_id", "time", "event_table_name"],
}


def _garbage_exports():
    event = st.fixed_dictionaries(dict(event_id=IDS, user_id=EVENT_USERS, session_id=IDS, time=TIMES,
                                       event_table_name=st.one_of(st.none(), GARBAGE, st.just("run_query"))))
    session = st.fixed_dictionaries(dict(session_id=IDS, user_id=EVENT_USERS, time=TIMES))
    user = st.fixed_dictionaries(dict(
        user_id=st.one_of(st.none(), GARBAGE), identity=st.one_of(st.none(), GARBAGE, st.just("x@y.com")),
        joindate=st.one_of(st.none(), GARBAGE, HUGE, st.just("2026-01-01")), account_id=IDS, role=IDS))
    account = st.fixed_dictionaries(dict(
        account_id=IDS, name=IDS, owner=IDS, plan=IDS,
        arr=st.one_of(st.none(), GARBAGE, HUGE, st.floats().map(str)), vertical=IDS,
        customer_since=st.one_of(st.none(), GARBAGE, st.just("2024-01-01")), status=IDS))
    return st.fixed_dictionaries(dict(
        all_events=st.lists(event, max_size=8), sessions=st.lists(session, max_size=5),
        users=st.lists(user, max_size=4), accounts=st.lists(account, max_size=3)))


def _valid_rows() -> dict[str, list[dict]]:
    return {
        "accounts": [dict(account_id="valid-A", name="Acme", owner="Ana", plan="growth", arr="100",
                          vertical="saas", customer_since="2024-01-01", status="paying")],
        "users": [dict(user_id="valid-u", identity="alice@acme.com", joindate="2026-01-01", account_id="valid-A"),
                  dict(user_id="valid-qa", identity="qa@garbage.io", joindate="2026-01-01", account_id="valid-A")],
        "all_events": [dict(event_id="valid-e1", user_id="valid-u", session_id="1", time="2026-08-10 09:00:00",
                            event_table_name="run_query"),
                       dict(event_id="valid-e2", user_id="valid-u", session_id="1", time="2026-08-11 09:00:00",
                            event_table_name="save_report")],
        "sessions": [dict(session_id="valid-s1", user_id="valid-u", time="2026-08-10 08:00:00")],
    }


def _write_text_exports(raw_dir, tables: dict[str, list[dict]], fmt: str) -> dict[str, pd.DataFrame]:
    """Write every value as text (or null), as a CSV or as parquet string columns."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    frames = {}
    for name, columns in COLUMNS.items():
        frame = pd.DataFrame(tables[name], columns=columns, dtype=object)
        frames[name] = frame
        if fmt == "csv":
            frame.to_csv(raw_dir / f"{name}.csv", index=False)
        else:
            frame.to_parquet(raw_dir / f"{name}.parquet", index=False)
    return frames


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=_garbage_exports(), fmt=st.sampled_from(["csv", "parquet"]), order=st.randoms())
def test_garbage_rows_are_quarantined_or_named(garbage, fmt, order):
    tables = _valid_rows()
    for name, rows in garbage.items():
        tables[name] = tables[name] + rows
        order.shuffle(tables[name])
    with tempfile.TemporaryDirectory() as tmp:
        raw_dir = Path(tmp) / "raw"
        frames = _write_text_exports(raw_dir, tables, fmt)
        with Warehouse(database=str(Path(tmp) / "w.duckdb")).get_connection(create=True) as conn:
            try:
                extract_range(conn, FolderSource(raw_dir=str(raw_dir)), load_config(), dt.date(2026, 8, 10),
                              dt.date(2026, 8, 11), NOW)
            except RawInputError as exc:
                # A structural failure must say which table and file.
                assert re.search(rf"raw table '(\w+)' \({re.escape(str(raw_dir))}/\1\.(csv|parquet)\)", str(exc)), exc
                return
            events = set(r[0] for r in conn.execute("SELECT event_id FROM raw.events").fetchall())
            sessions = set(r[0] for r in conn.execute("SELECT session_id FROM raw.sessions").fetchall())
            accounts = set(r[0] for r in conn.execute("SELECT account_id FROM raw.accounts").fetchall())
            contacts = set(r[0] for r in conn.execute(
                "SELECT user_id FROM raw.contacts WHERE excluded_reason IS NULL").fetchall())
            quarantine = conn.execute(
                "SELECT source_table, source_file, source_row, reason, row_json FROM raw.quarantine").fetchall()

    # Nothing valid is lost.
    assert {"valid-e1", "valid-e2"} <= events and "valid-s1" in sessions
    assert "valid-A" in accounts and "valid-u" in contacts

    # Every quarantined row is one real row of the file it names, quarantined once.
    rows_by_reason = {}
    for table, file, row, reason, values in quarantine:
        frame = frames[table]
        assert file == str(raw_dir / f"{table}.{fmt}")
        assert 1 <= row <= len(frame)
        key = COLUMNS[table][0]
        assert json.loads(values)[key] == frame.iloc[row - 1][key]
        rows_by_reason[(table, row)] = reason
    assert len(rows_by_reason) == len(quarantine)

    # Rows whose fate does not depend on how DuckDB parses garbage go where the rules say.
    for table, id_column in (("all_events", "event_id"), ("sessions", "session_id")):
        frame = frames[table]
        ids = frame[id_column].value_counts()
        for row, values in enumerate(frame.to_dict("records"), start=1):
            reason = rows_by_reason.get((table, row))
            if values["time"] is None:
                assert reason == "null_time"
            elif values["time"] == "2999-01-01 00:00:00":
                assert reason == "future_time"
            elif values["time"] == "2020-01-01 00:00:00":
                assert reason is None  # outside the run's range: not this run's business
            elif re.fullmatch(r"2026-08-1[01] \d\d:\d\d:\d\d", values["time"]):  # in the run's range
                if values[id_column] is None:
                    assert reason == "null_id"
                elif values["user_id"] is None:
                    assert reason == "null_user_id"
                elif table == "all_events" and values["event_table_name"] is None:
                    assert reason == "null_event_name"
                elif ids[values[id_column]] == 1:  # not a copy of another row
                    expected = {"valid-u": None, "valid-qa": None, "ghost": "unknown_user"}
                    if values["user_id"] in expected:
                        assert reason == expected[values["user_id"]]


def test_a_structural_failure_writes_nothing(pipeline):
    """Every raw file is checked and read before the first write: a failed run leaves the last good state."""
    extract(pipeline, valid())
    before = pipeline.query("SELECT * FROM raw.accounts")
    data = valid()
    data.accounts.append(dict(data.accounts[0], account_id="A2"))
    data.write(pipeline.raw_dir)
    events = pd.read_parquet(pipeline.raw_dir / "all_events.parquet").drop(columns="time")
    events.to_parquet(pipeline.raw_dir / "all_events.parquet")
    assert pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)[0] == "RawInputError"
    pd.testing.assert_frame_equal(pipeline.query("SELECT * FROM raw.accounts"), before)


REPEATED_EVENT = st.fixed_dictionaries(dict(
    event_id=st.sampled_from(["e1", "e2", "e3", "e4"]),
    user_id=st.sampled_from(["valid-u", "valid-qa", "ghost", None]),
    session_id=st.sampled_from(["1", "2"]),
    time=st.sampled_from(["2026-08-10 09:00:00", "2026-08-10 23:59:59", "2026-08-11 00:00:00"]),
    event_table_name=st.sampled_from(["run_query", "save_report"]),
))


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(REPEATED_EVENT, min_size=1, max_size=12))
def test_deduplication_keeps_the_earliest_valid_copy_of_each_id(events):
    """For any export with repeated ids, each id keeps exactly one copy: the earliest valid row by
    (time, user_id, file, row); every later valid copy is dropped as a duplicate; a copy with a
    problem is quarantined and never competes."""
    tables = {**_valid_rows(), "all_events": events}
    with tempfile.TemporaryDirectory() as tmp:
        raw_dir = Path(tmp) / "raw"
        _write_text_exports(raw_dir, tables, "parquet")
        with Warehouse(database=str(Path(tmp) / "w.duckdb")).get_connection(create=True) as conn:
            counts = extract_range(conn, FolderSource(raw_dir=str(raw_dir)), load_config(),
                                   dt.date(2026, 8, 10), dt.date(2026, 8, 11), NOW)
            loaded = {r[0]: r[1:] for r in conn.execute(
                "SELECT event_id, user_id, CAST(time AS VARCHAR) FROM raw.events").fetchall()}
            # The daily fact counts each kept copy under its own day and name.
            counted = {(str(day), name): n for day, name, n in conn.execute("""
                SELECT activity_date, name, n FROM (
                    UNPIVOT (SELECT activity_date, run_query_count, save_report_count
                             FROM core.daily_contact_activity WHERE user_id = 'valid-u')
                    ON run_query_count, save_report_count INTO NAME name VALUE n)
                WHERE n > 0""").fetchall()}
            quarantined = conn.execute(
                "SELECT count(*) FROM raw.quarantine WHERE source_table = 'all_events'").fetchone()[0]

    rows = [(e, row) for row, e in enumerate(events, start=1)]
    valid = [(e, row) for e, row in rows if e["user_id"] is not None]
    first = {}
    for e, row in sorted(valid, key=lambda r: (r[0]["time"], r[0]["user_id"], r[1])):
        first.setdefault(e["event_id"], e)
    # The qa identity is excluded and "ghost" is unknown: their first copies load nowhere.
    kept = [e for e in first.values() if e["user_id"] == "valid-u"]
    assert loaded == {e["event_id"]: (e["user_id"], e["time"]) for e in kept}
    assert counted == Counter((e["time"][:10], f"{e['event_table_name']}_count") for e in kept)
    assert counts["events_duplicates_dropped"] == len(valid) - len(first)
    # A ghost's later copies are duplicates, not bad input: only its kept copy is quarantined.
    assert counts["events_quarantined"] == quarantined == (len(rows) - len(valid)) + sum(
        e["user_id"] == "ghost" for e in first.values())


def test_typed_times_at_the_edge_of_a_day_land_in_exactly_one_day(tmp_path):
    """Daily runs skip parquet row groups by a loose test on the raw time column; the exact test
    then files each event under its UTC day, so no event is lost or loaded twice at a day's edge,
    including nanosecond times that round across midnight when read as microseconds."""
    tables = _valid_rows()
    raw_dir = tmp_path / "raw"
    _write_text_exports(raw_dir, tables, "parquet")
    edges = ["2026-08-10 00:00:00", "2026-08-10 23:59:59.999999", "2026-08-10 23:59:59.9999996",
             "2026-08-11 00:00:00", "2026-08-11 00:00:00.000000001", "2026-08-11 23:59:59.999999999"]
    pd.DataFrame({
        "event_id": [f"e{i}" for i in range(len(edges))], "user_id": "valid-u", "session_id": "1",
        "time": pd.to_datetime(edges, format="ISO8601"), "event_table_name": "run_query",
    }).to_parquet(raw_dir / "all_events.parquet", index=False)
    with Warehouse(database=str(tmp_path / "w.duckdb")).get_connection(create=True) as conn:
        for day in (dt.date(2026, 8, 10), dt.date(2026, 8, 11), dt.date(2026, 8, 12)):
            extract_range(conn, FolderSource(raw_dir=str(raw_dir)), load_config(), day, day, NOW)
        filed = conn.execute("SELECT event_id, activity_date FROM raw.events ORDER BY event_id").fetchall()
        exact = conn.execute(f"""
            SELECT event_id, CAST(CAST(time AS TIMESTAMP) AS DATE)
            FROM read_parquet('{raw_dir / "all_events.parquet"}') ORDER BY event_id
        """).fetchall()
    assert filed == exact and len(filed) == len(edges)
