"""The warehouse resource: its DuckDB limits, and how a stage swaps a range of days in."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from health_pipeline.assets.account_metrics.asset import batch_plan as account_batch_plan
from health_pipeline.assets.contact_metrics.asset import batch_plan
from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.publish import day_batches, memory_limit_bytes, write_range
from health_pipeline.recovery import check_warehouse
from health_pipeline.resources import Warehouse, WarehouseError, default_resources
from health_pipeline_tests.conftest import Pipeline
from health_pipeline_tests.test_bad_input import DAY, NEXT, valid


def test_memory_limit_and_threads_reach_the_connection(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "w.duckdb"), memory_limit="512MB", threads=1)
    with warehouse.get_connection(create=True) as conn:
        threads, memory = conn.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit')"
        ).fetchall()[0]
    assert threads == 1
    assert memory == "488.2 MiB"  # DuckDB reports 512 MB in MiB


def test_unset_limits_leave_duckdb_defaults(tmp_path):
    assert Warehouse(database=str(tmp_path / "w.duckdb")).duckdb_settings == {}


def test_environment_sets_the_limits_as_env_vars(monkeypatch):
    monkeypatch.setenv("HEALTH_DUCKDB_MEMORY_LIMIT", "2GB")
    monkeypatch.setenv("HEALTH_DUCKDB_THREADS", "2")
    warehouse = default_resources()["warehouse"]
    assert warehouse.memory_limit == dg.EnvVar("HEALTH_DUCKDB_MEMORY_LIMIT")
    assert warehouse.threads == dg.EnvVar.int("HEALTH_DUCKDB_THREADS")
    monkeypatch.delenv("HEALTH_DUCKDB_MEMORY_LIMIT")
    monkeypatch.delenv("HEALTH_DUCKDB_THREADS")
    unset = default_resources()["warehouse"]
    assert unset.memory_limit is None and unset.threads is None


def gone(path) -> str:
    return (f"the warehouse {path} is gone (deleted or moved since raw_activity built it, or never built): restore "
            "it, or run again from raw_activity, which builds it; nothing was created in its place")


@pytest.mark.parametrize("read_only", [False, True])
def test_only_the_building_stage_creates_the_warehouse(tmp_path, read_only):
    path = tmp_path / "data" / "w.duckdb"
    with pytest.raises(WarehouseError) as failure:
        with Warehouse(database=str(path)).get_connection(read_only=read_only):
            pass
    assert str(failure.value) == gone(path)
    assert not (tmp_path / "data").exists()  # not the file, nor its folder
    assert check_warehouse(Warehouse(database=str(path))) == f"warehouse {path}: none yet (the first run builds it)"
    with Warehouse(database=str(path)).get_connection(create=True) as conn:
        assert conn.execute("SELECT count(*) FROM duckdb_schemas() WHERE schema_name IN ('raw', 'core', 'export')"
                            ).fetchall() == [(3,)]
    with Warehouse(database=str(path)).get_connection(read_only=read_only):
        pass  # there now: any step opens it


def test_a_warehouse_deleted_after_raw_activity_fails_the_next_step_by_name_and_is_not_recreated(tmp_path):
    pipeline = Pipeline(tmp_path)
    valid().write(pipeline.raw_dir)
    pipeline.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    path = tmp_path / "warehouse.duckdb"
    path.unlink()
    assert pipeline.failure(DAY, NEXT, selection=["contact_metrics"]) == ("WarehouseError", gone(path))
    assert not path.exists()
    pipeline.materialize(DAY, NEXT, selection=[*RAW_ACTIVITY_ASSETS, "contact_metrics"])  # the way back
    assert path.exists()


def test_day_batches_cover_the_range_once_in_order():
    d = dt.date.fromisoformat
    assert list(day_batches(d("2026-06-01"), d("2026-06-23"), 10)) == [
        (d("2026-06-01"), d("2026-06-10")), (d("2026-06-11"), d("2026-06-20")), (d("2026-06-21"), d("2026-06-23"))]
    assert list(day_batches(d("2026-06-01"), d("2026-06-01"), 10)) == [(d("2026-06-01"), d("2026-06-01"))]


def test_batched_write_range_equals_one_statement(tmp_path):
    # Each day's row depends on the batch only through its parameters: a sum over a trailing window.
    sql = """
        SELECT CAST(s AS DATE) AS day,
               (SELECT count(*) FROM range(DATE '2026-05-01', CAST(s AS DATE) + 1, INTERVAL 1 DAY)) AS days_so_far
        FROM generate_series($first_day::TIMESTAMP, $last_day::TIMESTAMP, INTERVAL 1 DAY) t(s)
    """
    first, last = dt.date(2026, 6, 1), dt.date(2026, 6, 23)
    params = {"first_day": first, "last_day": last}
    with Warehouse(database=str(tmp_path / "w.duckdb")).get_connection(create=True) as conn:
        write_range(conn, "core.whole", "day", first, last, sql, params)
        meta = write_range(conn, "core.batched", "day", first, last, sql, params, batch_days=10)
        whole = conn.execute("SELECT * FROM core.whole ORDER BY day").fetchall()
        batched = conn.execute("SELECT * FROM core.batched ORDER BY day").fetchall()
    assert batched == whole and len(whole) == 23 and meta["dagster/row_count"].value == 23
    assert whole[0] == (first, 32) and whole[-1] == (last, 54)


def test_a_first_write_is_visible_to_filtered_reads_in_the_same_connection(tmp_path):
    """A table's first range swap holds several row groups (500k rows), and a filtered read on the
    same connection sees them all. DuckDB 2.0.0 returned no rows here when the table was created in
    the swap's own transaction; the sync files of a first backfill were empty because of it."""
    sql = """
        SELECT DATE '2026-06-01' + CAST(i // 5000 AS INTEGER) AS day, i AS account_id
        FROM range(500000) t(i)
    """
    with Warehouse(database=str(tmp_path / "w.duckdb")).get_connection(create=True) as conn:
        write_range(conn, "core.first", "day", dt.date(2026, 6, 1), dt.date(2026, 9, 8), sql)
        day = conn.execute("SELECT count(*) FROM core.first WHERE day = ?", [dt.date(2026, 6, 11)]).fetchall()
    assert day == [(5000,)]


def test_memory_limit_bytes_reads_duckdbs_own_figure(tmp_path):
    with Warehouse(database=str(tmp_path / "w.duckdb"), memory_limit="512MB").get_connection(create=True) as conn:
        assert memory_limit_bytes(conn) == int(488.2 * 2**20)  # '488.2 MiB'


def test_contact_metrics_batches_fit_half_the_memory_limit(tmp_path):
    """A snapshot date joins the fact rows of its 90 days, at 64 bytes each; a batch holds as many
    dates as half the memory limit fits."""
    day = dt.date(2026, 9, 30)
    with Warehouse(database=str(tmp_path / "w.duckdb"), memory_limit="512MB").get_connection(create=True) as conn:
        # 1,000 contacts active on each of the 100 days up to `day`: the 90 days up to it hold 90,000
        # rows, and the ten days before them do not count.
        conn.execute("""CREATE TABLE core.daily_contact_activity AS
                        SELECT $day::DATE - d::INTEGER AS activity_date, 'u' || u AS user_id
                        FROM range(100) r(d), range(1000) s(u)""", {"day": day})
        conn.execute("""INSERT INTO core.daily_contact_activity
                        SELECT $day::DATE - d::INTEGER, 'v' || u FROM range(90) r(d), range(111) s(u)""",
                     {"day": day})
        joined = conn.execute("SELECT count(*) FROM core.daily_contact_activity "
                              "WHERE activity_date > $day::DATE - 90", {"day": day}).fetchall()[0][0]
        assert joined == 90_000 + 90 * 111
        plan = batch_plan(conn, day - dt.timedelta(days=99), day)
        whole = batch_plan(conn, day, day)
    # 512 MB is 488.2 MiB to DuckDB, 511,914,803 bytes; half is 255,957,401, and 99,990 rows * 64
    # bytes = 6,399,360 a date: 39 dates a batch, so 100 days take 3 batches.
    assert (plan["batch_days"], plan["batches"]) == (39, 3)
    assert "3 batches of up to 39 days: each snapshot date joins about 99,990 fact rows" in plan["batch_plan"]
    assert (whole["batch_days"], whole["batches"]) == (1, 1)  # never more days than the range has


def test_account_metrics_batches_fit_half_the_memory_limit(tmp_path):
    """A snapshot date rolls up the contact metrics rows of its day, at 200 bytes each."""
    day = dt.date(2026, 9, 30)
    with Warehouse(database=str(tmp_path / "w.duckdb"), memory_limit="512MB").get_connection(create=True) as conn:
        # 50,000 contacts on `day`; the 1,000 of the day before do not count.
        conn.execute("""CREATE TABLE core.contact_metrics AS
                        SELECT $day::DATE AS snapshot_date, 'u' || u AS user_id FROM range(50000) s(u)
                        UNION ALL SELECT $day::DATE - 1, 'u' || u FROM range(1000) s(u)""", {"day": day})
        plan = account_batch_plan(conn, day - dt.timedelta(days=99), day)
    # Half of 511,914,803 bytes is 255,957,401; 50,000 rows * 200 bytes = 10,000,000 a date:
    # 25 dates a batch, so 100 days take 4 batches.
    assert (plan["batch_days"], plan["batches"]) == (25, 4)
    assert "4 batches of up to 25 days: each snapshot date rolls up about 50,000 contacts" in plan["batch_plan"]
