"""Complete history or no score. A contact's metrics read every earlier day of the fact (the 28-
and 90-day windows, and the first session and last activity over all history), so a run first
extracts the earlier days of the raw export that no run extracted, and contact_metrics alone
refuses a day whose history lacks days. The history starts at the first partition or the raw
events' first day (isolated days aside, test_isolated_days.py), whichever is later.
"""

from __future__ import annotations

import datetime as dt
import shutil

import dagster as dg
import pandas as pd
import pytest

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline_tests.conftest import UP_TO_THE_EXPORTS, Pipeline, RawData, run_records

FIRST_PARTITION = dt.date(2026, 6, 1)  # HEALTH_PARTITIONS_START in the tests
START = dt.date(2026, 7, 1)  # the crafted export's first day: a month after the first partition


# A test that reads no table after contact_metrics runs nothing after it (nor after the exports:
# conftest.UP_TO_THE_EXPORTS); the later assets would only add time.
UP_TO_CONTACT_METRICS = [*RAW_ACTIVITY_ASSETS, "contact_metrics"]


def day(n: int) -> dt.date:
    return START + dt.timedelta(days=n)


def every_day(first: dt.date, last: dt.date, quiet: tuple[dt.date, ...] = ()) -> RawData:
    """One account with one user who has a session and a run_query every day of [first, last] but `quiet`."""
    data = RawData()
    data.accounts = [dict(account_id="A1", name="Acme", owner="Ana", plan="growth", arr=50000.0, vertical="saas",
                          customer_since="2024-01-01", status="paying")]
    data.users = [dict(user_id="u1", identity="alice@acme.com", joindate="2026-01-01", account_id="A1",
                       role="admin")]
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    days = [d for d in days if d not in quiet]
    data.sessions = [dict(session_id=str(i), user_id="u1", time=f"{d} 09:00:00") for i, d in enumerate(days)]
    data.events = [dict(event_id=str(i), user_id="u1", session_id=str(i), time=f"{d} 09:01:00",
                        event_table_name="run_query") for i, d in enumerate(days)]
    return data


def processed(pipeline: Pipeline) -> list[tuple[dt.date, dt.date]]:
    runs = pipeline.query("SELECT first_day, last_day FROM raw.history_runs ORDER BY recorded_at")
    return [(a.date(), b.date()) for a, b in runs.itertuples(index=False)]


def metrics_of(pipeline: Pipeline, snapshot_date: dt.date) -> dict:
    return pipeline.row("core.contact_metrics", "user_id", "u1", str(snapshot_date))


def test_a_run_extracts_first_the_earlier_days_that_no_run_extracted(tmp_path):
    """Days 0-1 are run (day 1 is a known gap: held, though it has no activity), then day 5 alone:
    its run extracts days 2-4 too, in the same transaction, and its metrics count days 0-5."""
    pipeline = Pipeline(tmp_path, known_gaps=[str(day(1))], instance=dg.DagsterInstance.ephemeral())
    every_day(START, day(9), quiet=(day(1),)).write(pipeline.raw_dir)
    pipeline.materialize(day(0), day(1), selection=UP_TO_THE_EXPORTS)
    result = pipeline.materialize(day(5), day(5), selection=UP_TO_THE_EXPORTS)

    assert processed(pipeline) == [(day(0), day(1)), (day(2), day(5))]
    fact = pipeline.query("SELECT activity_date FROM core.daily_contact_activity ORDER BY ALL")
    assert [d.date() for d in fact["activity_date"]] == [day(0), *map(day, range(2, 6))]
    u1 = metrics_of(pipeline, day(5))
    assert (u1["active_days_28d"], u1["usage_28d"], u1["sessions_90d"]) == (5, 5, 5)  # days 0, 2, 3, 4, 5
    assert u1["first_session_date"].date() == day(0)
    # Each extracted day is recorded on its own partition, beside the run of day 5 (which records
    # day 5 alone); nothing is scored there.
    recorded = run_records(pipeline.instance, result.run_id, "daily_contact_activity")
    records = {partition: record.asset_materialization.metadata for partition, record in recorded.items()}
    assert {partition: record.run_id for partition, record in recorded.items()} == {
        **{str(day(n)): "" for n in range(2, 5)}, str(day(5)): result.run_id}
    assert all(records[str(day(n))]["refreshed_by_the_run_of"].value == str(day(5)) for n in range(2, 5))
    assert records[str(day(2))]["dagster/row_count"].value == 1
    assert records[str(day(5))]["earlier_days_extracted"].value == f"{day(2)} .. {day(4)}"
    assert list(run_records(pipeline.instance, result.run_id, "account_health")) == [str(day(5))]


def test_the_history_starts_at_the_first_partition_when_the_raw_data_starts_earlier(tmp_path):
    """The export starts on 05-20, before the first partition: no run can process those days, so
    the history of 06-06 is complete from 06-01 on. Before, the run of 06-05 .. 06-06 read two days."""
    pipeline = Pipeline(tmp_path)
    every_day(dt.date(2026, 5, 20), dt.date(2026, 6, 10)).write(pipeline.raw_dir)
    pipeline.materialize("2026-06-05", "2026-06-06", selection=UP_TO_CONTACT_METRICS)
    assert processed(pipeline) == [(FIRST_PARTITION, dt.date(2026, 6, 6))]
    u1 = metrics_of(pipeline, dt.date(2026, 6, 6))
    assert (u1["active_days_28d"], u1["first_session_date"].date()) == (6, FIRST_PARTITION)


def test_a_raw_export_whose_first_day_is_its_start_scores_its_first_days(tmp_path):
    """The export starts a month after the first partition: the days before it are not missing,
    so its first day is scored from itself alone, and nothing earlier is extracted."""
    pipeline = Pipeline(tmp_path)
    every_day(START, day(3)).write(pipeline.raw_dir)
    pipeline.materialize(day(0), day(0), selection=UP_TO_THE_EXPORTS)
    assert processed(pipeline) == [(day(0), day(0))]
    assert metrics_of(pipeline, day(0))["usage_28d"] == 1
    assert len(pipeline.query(f"SELECT * FROM export.account_health WHERE snapshot_date = '{day(0)}'")) == 1
    # Alone, contact_metrics finds the history of day 0 whole: the days before the export are not missing.
    pipeline.materialize(day(0), day(0), selection=["contact_metrics"])
    assert metrics_of(pipeline, day(0))["usage_28d"] == 1


def test_contact_metrics_alone_over_days_that_no_run_extracted_fails_naming_them(tmp_path):
    pipeline = Pipeline(tmp_path)
    every_day(START, day(9)).write(pipeline.raw_dir)
    pipeline.materialize(day(0), day(1), selection=UP_TO_CONTACT_METRICS)
    cls, message = pipeline.failure(day(5), day(5), selection=["contact_metrics"])
    assert cls == "IncompleteHistory"
    assert message == (f"contact_metrics for {day(5)} .. {day(5)} reads every earlier day of the fact, and no run "
                       f"extracted {day(2)} .. {day(5)}: materialize raw_activity with it (health-pipeline run does), "
                       "which extracts them first; nothing was published")
    assert pipeline.query("SELECT count(*) AS n FROM core.contact_metrics WHERE snapshot_date > $d",
                          {"d": day(1)})["n"][0] == 0


SAMPLE = SampleSpec(accounts=6, days=95, seed=5)  # 2026-06-01 .. 2026-09-03
# The trend reads the scores of 7 and 28 days before, which a run of the last three days did not compute.
SCORES_OF_OTHER_DAYS = ["computed_at", "previous_score_7d", "score_delta_7d", "previous_score_28d",
                        "score_delta_28d"]


@pytest.mark.slow
def test_a_warehouse_rebuilt_from_its_last_days_scores_them_as_a_full_run(tmp_path):
    """The reported case: a lost warehouse rebuilt with a run of the last three days published
    scores of three days of usage. The run now extracts the 92 earlier days first, and the last
    day's sync rows and contact usage equal those of a run of every day."""
    full, rebuilt = Pipeline(tmp_path / "full"), Pipeline(tmp_path / "rebuilt")
    generate_sample(full.raw_dir, SAMPLE)
    shutil.copytree(full.raw_dir, rebuilt.raw_dir)
    full.materialize(SAMPLE.start, SAMPLE.end)
    rebuilt.materialize(SAMPLE.end - dt.timedelta(days=2), SAMPLE.end)

    last_day = {"d": SAMPLE.end}
    for table, other_days in (("export.account_health", SCORES_OF_OTHER_DAYS), ("export.contact_usage",
                                                                                ["computed_at"])):
        query = (f"SELECT * EXCLUDE ({', '.join(other_days)}) FROM {table} WHERE snapshot_date = $d "
                 "ORDER BY ALL")
        expected = full.query(query, last_day)
        assert len(expected) > 0
        pd.testing.assert_frame_equal(rebuilt.query(query, last_day), expected, obj=table)
    fact = "SELECT * FROM core.daily_contact_activity ORDER BY ALL"
    pd.testing.assert_frame_equal(rebuilt.query(fact), full.query(fact))
    assert processed(rebuilt) == [(SAMPLE.start, SAMPLE.end)]
