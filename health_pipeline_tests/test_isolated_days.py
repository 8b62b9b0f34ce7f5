"""Isolated event days: a day of raw events with no other within 28 days of it, before or after
the rest of the data (a clock reset to 1970, a year typed wrong), moves neither the first
partition nor a run's default days, and the CLI says what it left out. The days are found from
the parquet statistics, reading only the row groups that may hold days outside the data.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from health_pipeline import cli
from health_pipeline import settings as health_settings
from health_pipeline.raw_input import EventDays, event_days
from health_pipeline.sample import MANIFEST, SampleSpec, generate_sample
from health_pipeline.sources import FolderSource
from health_pipeline_tests.conftest import Pipeline, RawData

START = dt.date(2026, 7, 1)


def day(n: int) -> dt.date:
    return START + dt.timedelta(days=n)


def at(date: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(date, dt.time(hour))


def columns(times: list[dt.datetime], prefix: str = "") -> dict:
    """The all_events columns of one event per time."""
    n = len(times)
    return {"event_id": [f"{prefix}{j}" for j in range(n)], "user_id": ["u1"] * n, "session_id": ["1"] * n,
            "time": times, "event_table_name": ["run_query"] * n}

def write_events(raw_dir: Path, files: list[list[dt.datetime]], row_group_size: int) -> None:
    """An all_events folder with one parquet file per list of times, in row groups of `row_group_size`."""
    folder = raw_dir / "all_events"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, times in enumerate(files):
        table = pa.table(columns(times, f"{i}-") | {"time": pa.array(times, pa.timestamp("us"))})
        pq.write_table(table, folder / f"{i:03d}.parquet", row_group_size=row_group_size)


def by_hand(times: list[dt.datetime], today: dt.date) -> EventDays:
    """The rule as written: of the days up to today (all, if none is), the first day is the
    earliest followed by another within 28 days, the last the latest preceded by another within
    28; the days outside them are isolated. With no two days that close, none is but the future."""
    rows = pd.Series([t.date() for t in times]).value_counts().sort_index()
    days = list(rows.index)
    past = [d for d in days if d <= today] or days
    followed = [d for d in past if any(0 < (e - d).days <= 28 for e in past)]
    preceded = [d for d in past if any(0 < (d - e).days <= 28 for e in past)]
    first, last = (followed[0], preceded[-1]) if followed else (past[0], past[-1])
    return EventDays(first, last, tuple((d, int(rows[d])) for d in days if d < first),
                     tuple((d, int(rows[d])) for d in days if d > last))


def test_isolated_days_before_and_after_the_data_are_left_out_and_counted(tmp_path):
    """Three events on 1970-01-01 in the file of 07-03, in a row group with that day's events, and
    two in 2031: the data is 07-01 .. 07-05."""
    bulk = [[at(day(n), h) for h in (8, 9, 10)] for n in range(5)]
    bulk[2] += [at(dt.date(1970, 1, 1), h) for h in (0, 1, 2)]
    bulk[4] += [at(dt.date(2031, 5, 5)), at(dt.date(2031, 5, 5), 13)]
    expected = EventDays(day(0), day(4), ((dt.date(1970, 1, 1), 3),), ((dt.date(2031, 5, 5), 2),))
    for row_group_size in (100, 2):
        write_events(tmp_path, bulk, row_group_size)
        assert event_days(tmp_path) == expected
    # Days after today are never the data's, even close together (a clock a few years ahead for a week).
    future = [at(dt.date(2031, 5, 5)), at(dt.date(2031, 5, 5), 13), at(dt.date(2031, 5, 6))]
    write_events(tmp_path, [*bulk[:2], future], row_group_size=100)
    assert event_days(tmp_path, today=day(1)) == EventDays(day(0), day(1), (), ((dt.date(2031, 5, 5), 2),
                                                                             (dt.date(2031, 5, 6), 1)))
    # A day 28 days before the next is not isolated; 29 days before, it is.
    for gap, isolated in ((28, ()), (29, ((day(-29), 1),))):
        write_events(tmp_path, [[at(day(-gap))], *bulk[:2]], row_group_size=100)
        assert event_days(tmp_path).isolated_before == isolated


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offsets=st.lists(st.integers(-20_000, 400), min_size=1, max_size=40), files=st.integers(1, 4),
       row_group_size=st.integers(1, 8), sort=st.booleans(), today=st.integers(-40, 400))
@example(offsets=[-20_000, 0, 1, 2, 3, 300], files=1, row_group_size=100, sort=False, today=400)  # one row group
@example(offsets=[0, 1, 2, 300, 301], files=2, row_group_size=1, sort=True, today=100)  # a cluster in the future
def test_the_statistics_find_the_same_days_as_reading_every_row(tmp_path, offsets, files, row_group_size, sort,
                                                                today):
    """However the events are spread over files and row groups, reading only the row groups
    that may hold days outside the data gives the rule's answer over every row."""
    times = [at(day(n), n % 24) for n in offsets]
    shares = [times[i::files] for i in range(files)]
    write_events(tmp_path, [sorted(s) if sort else s for s in shares if s], row_group_size)
    assert event_days(tmp_path, day(today)) == by_hand(times, day(today))


def test_a_csv_export_finds_its_isolated_days_by_reading_every_row(tmp_path):
    times = [at(day(n)) for n in range(4)] + [at(dt.date(1970, 1, 1), 0)]
    pd.DataFrame(columns(times)).to_csv(tmp_path / "all_events.csv", index=False)
    assert event_days(tmp_path) == EventDays(START, day(3), ((dt.date(1970, 1, 1), 1),))


def sample_with_strays(tmp_path: Path, monkeypatch, strays: list[str]) -> Path:
    """A sample of 2026-06-01 .. 06-06 with events at the `strays` times in the file of its third
    day, whose first partition comes from its events (no HEALTH_PARTITIONS_START, no manifest)."""
    raw_dir = tmp_path / "raw"
    generate_sample(raw_dir, SampleSpec(accounts=3, days=6, seed=5))
    (raw_dir / MANIFEST).unlink()
    third = raw_dir / "all_events" / "2026-06-03.parquet"
    events = pd.read_parquet(third)
    pd.concat([events.head(len(strays)).assign(time=pd.to_datetime(strays), event_id=-1), events]).to_parquet(
        third, index=False)
    monkeypatch.delenv("HEALTH_PARTITIONS_START")
    monkeypatch.setenv("HEALTH_RAW_DIR", str(raw_dir))
    return raw_dir


def test_an_event_dated_1970_moves_neither_the_first_partition_nor_the_default_days(tmp_path, monkeypatch,
                                                                                    capsys):
    """An event dated 1970 and two dated 2031: the first partition and the run's days are those of
    the data, and a line says what was left out and why."""
    raw_dir = sample_with_strays(tmp_path, monkeypatch, ["1970-01-01", "2031-05-05", "2031-05-06"])
    assert health_settings.partitions_start() == "2026-06-01"
    assert cli._run_range(FolderSource(raw_dir=str(raw_dir)), None, None) == (dt.date(2026, 6, 1), dt.date(2026, 6, 6))
    assert capsys.readouterr().out.splitlines() == [
        "ignoring 1 event on 1970-01-01, isolated from the rest of the data, which starts 2026-06-01: no run reads "
        "it, as the first daily partition comes after",
        "ignoring 2 events on 2031-05-05 .. 2031-05-06, isolated from the rest of the data, which ends 2026-06-06: "
        "--end cannot reach them; every run quarantines the rows dated more than HEALTH_FUTURE_TOLERANCE_HOURS "
        "(default 24) past its clock as future_time",
        f"the raw events in {raw_dir} cover 2026-06-01 .. 2026-06-06: running 2026-06-01 .. 2026-06-06 "
        "(--start and --end choose other days)",
    ]


def test_an_end_on_an_isolated_day_after_the_data_is_refused(tmp_path, monkeypatch, capsys):
    raw_dir = sample_with_strays(tmp_path, monkeypatch, ["2026-09-01 10:00:00"])
    with pytest.raises(cli.Refused) as refused:
        cli._run_range(FolderSource(raw_dir=str(raw_dir)), dt.date(2026, 6, 2), dt.date(2026, 9, 1))
    assert str(refused.value) == ("--end 2026-09-01 is after the raw events' last day, 2026-06-06 (isolated days "
                                  "aside): there is no data to run after it")
    assert capsys.readouterr().out.splitlines() == [
        "ignoring 1 event on 2026-09-01, isolated from the rest of the data, which ends 2026-06-06: --end cannot "
        "reach it"]


def test_a_run_of_the_data_quarantines_the_future_days_and_never_reads_those_before_the_first_partition(tmp_path):
    """What becomes of isolated rows: one dated 2031 is quarantined as future_time by every run,
    as any row too far past the run's clock; one dated 1970 lies before the first partition
    (HEALTH_PARTITIONS_START, else the data's first day), which no run can cover, so it is neither
    loaded nor quarantined. A run whose days covered it would read it like any other row."""
    pipeline = Pipeline(tmp_path)
    times = [f"{day(0)} 09:00:00", f"{day(1)} 09:00:00", "1970-01-01 00:00:00", "2031-05-05 00:00:00"]
    data = RawData(
        accounts=[dict(account_id="A1", name="Acme", owner="Ana", plan="growth", arr=1.0, vertical="saas",
                       customer_since="2024-01-01", status="paying")],
        users=[dict(user_id="u1", identity="alice@acme.com", joindate="2026-01-01", account_id="A1", role="admin")],
        sessions=[dict(session_id=str(i), user_id="u1", time=f"{day(i)} 08:00:00") for i in range(2)],
        events=[dict(event_id=str(i), user_id="u1", session_id="1", time=time, event_table_name="run_query")
                for i, time in enumerate(times)])
    data.write(pipeline.raw_dir)
    pipeline.materialize(day(0), day(1))
    assert list(pipeline.query("SELECT event_id FROM raw.events ORDER BY ALL")["event_id"]) == ["0", "1"]
    quarantined = pipeline.query("SELECT reason, partition_date IS NULL AS undated, row_json FROM raw.quarantine")
    assert list(quarantined.itertuples(index=False, name=None)) == [
        ("future_time", True, '{"event_id":"3","user_id":"u1","session_id":"1","time":"2031-05-05 00:00:00",'
                              '"event_table_name":"run_query"}')]
