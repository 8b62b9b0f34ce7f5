"""The loader's rules for messy but valid input, each a case that used to be taken silently.

Folders skip hidden and temporary files; a Spark folder `<name>.parquet/` is a folder of parquet
files; a table in two formats is refused; headers match
whatever their case; ids are trimmed; enumerated values and identity patterns ignore case;
a tracked event spelled in another case is reported; source columns named like the loader's
helpers do not collide; and unreadable input names the file and line.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline_tests.conftest import Pipeline
from health_pipeline_tests.test_bad_input import DAY, NEXT, extract, quarantined, valid


def test_hidden_and_temporary_files_in_a_table_folder_are_skipped(pipeline: Pipeline):
    data = valid()
    data.write(pipeline.raw_dir)
    folder = pipeline.raw_dir / "all_events"
    (folder / "day=2026-08-10").mkdir(parents=True)
    shutil.move(pipeline.raw_dir / "all_events.parquet", folder / "day=2026-08-10" / "part-0.parquet")
    for stale in ("_temporary/part-0.parquet", ".hidden.parquet", ".backup/part-0.parquet", "_SUCCESS.parquet"):
        (folder / stale).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / "day=2026-08-10" / "part-0.parquet", folder / stale)
    meta = Pipeline.raw_activity_metadata(pipeline.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS))
    assert meta["events_read"] == 3 and meta["events_duplicates_dropped"] == 0


def as_spark_folder(raw_dir, table: str):
    """Move `<table>.parquet` into a folder of that name, as Spark writes a table: a part file and
    the markers and checksums beside it."""
    rows = pd.read_parquet(raw_dir / f"{table}.parquet")
    (raw_dir / f"{table}.parquet").unlink()
    folder = raw_dir / f"{table}.parquet"
    folder.mkdir()
    rows.to_parquet(folder / "part-00000-5e1c-c000.snappy.parquet", index=False)
    (folder / "_SUCCESS").touch()
    (folder / ".part-00000-5e1c-c000.snappy.parquet.crc").write_bytes(b"crc")
    return folder


def test_a_spark_folder_named_like_a_parquet_file_is_read_as_the_table(pipeline: Pipeline):
    valid().write(pipeline.raw_dir)
    for table in ("users", "all_events"):
        as_spark_folder(pipeline.raw_dir, table)
    meta = Pipeline.raw_activity_metadata(pipeline.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS))
    assert meta["events_read"] == 3 and meta["events_loaded"] == 2 and quarantined(pipeline) == []
    assert sorted(pipeline.query("SELECT user_id FROM raw.contacts").user_id) == ["qa", "u1"]


def test_a_table_both_as_a_folder_and_as_a_spark_folder_is_refused(pipeline: Pipeline):
    valid().write(pipeline.raw_dir)
    spark = as_spark_folder(pipeline.raw_dir, "users")
    shutil.copytree(spark, pipeline.raw_dir / "users")
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert (cls, message) == ("RawInputError", f"raw table 'users' is in more than one place in "
                                               f"{pipeline.raw_dir}: users/, users.parquet/; keep one")


def test_a_table_in_two_formats_is_refused(pipeline: Pipeline):
    valid().write(pipeline.raw_dir)
    pd.read_parquet(pipeline.raw_dir / "accounts.parquet").to_csv(pipeline.raw_dir / "accounts.csv", index=False)
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert (cls, message) == ("RawInputError", f"raw table 'accounts' is in more than one place in "
                                               f"{pipeline.raw_dir}: accounts.parquet, accounts.csv; keep one")


def test_headers_match_whatever_their_case(pipeline: Pipeline):
    data = valid()
    data.write(pipeline.raw_dir)
    users = pd.read_parquet(pipeline.raw_dir / "users.parquet")
    users.rename(columns={"user_id": "User_ID", "account_id": "ACCOUNT_ID"}).to_parquet(
        pipeline.raw_dir / "users.parquet", index=False)
    meta = Pipeline.raw_activity_metadata(pipeline.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS))
    assert meta["events_loaded"] == 2 and quarantined(pipeline) == []


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_header_twice_is_refused(pipeline: Pipeline, fmt):
    valid().write(pipeline.raw_dir, fmt)
    path = pipeline.raw_dir / f"users.{fmt}"
    if fmt == "csv":
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0] + ",User_ID"] + [line + ",x" for line in lines[1:]]) + "\n")
    else:
        users = pd.read_parquet(path)
        users.insert(1, "User_Id", users["user_id"])
        users.to_parquet(path, index=False)
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert (cls, message) == ("RawInputError", f"raw table 'users' ({path}) has the column 'user_id' twice "
                                               "(headers match whatever their case); rename or drop one")


def test_ids_are_trimmed_and_one_id_written_two_ways_is_a_conflict(pipeline: Pipeline):
    data = valid()
    data.accounts.append(dict(data.accounts[0], account_id="A1 "))           # the same id, padded
    data.users.append(dict(user_id=" u2", identity="bo@acme.com", joindate="2026-01-01", account_id=" A1"))
    data.events.append(dict(event_id="10", user_id="u2 ", session_id="1", time=f"{DAY} 12:00:00",
                            event_table_name="run_query"))
    extract(pipeline, data)
    assert list(pipeline.query("SELECT account_id FROM raw.accounts")["account_id"]) == ["A1"]
    assert [(q[0], q[1]) for q in quarantined(pipeline)] == [("accounts", "conflicting_duplicate")]
    contacts = pipeline.query("SELECT user_id, account_id FROM raw.contacts ORDER BY user_id")
    assert ("u2", "A1") in set(map(tuple, contacts.values))
    assert pipeline.query("SELECT user_id FROM raw.events WHERE event_id = '10'")["user_id"][0] == "u2"


@pytest.mark.slow
def test_status_plan_role_and_identity_patterns_ignore_case(tmp_path):
    pipeline = Pipeline(tmp_path, sparse=True)
    data = valid()
    data.accounts[0].update(plan="Enterprise", status="Paying ")
    data.accounts.append(dict(data.accounts[0], account_id="A2", name="Gone", status=" Churned"))
    data.users[0]["role"] = " ADMIN"
    data.users.append(dict(user_id="qa2", identity="QA@GARBAGE.IO", joindate="2026-01-01", account_id="A1"))
    data.write(pipeline.raw_dir)
    pipeline.materialize(DAY, NEXT)
    accounts = pipeline.query("SELECT account_id, plan, status FROM raw.accounts ORDER BY ALL")
    assert list(map(tuple, accounts.values)) == [("A1", "enterprise", "paying"), ("A2", "enterprise", "churned")]
    contacts = dict(pipeline.query("SELECT user_id, excluded_reason FROM raw.contacts").values)
    assert contacts["qa2"] == "identity_pattern"
    health = pipeline.query(f"SELECT * FROM core.account_health WHERE snapshot_date = '{NEXT}'")
    assert list(health["account_id"]) == ["A1"]            # the churned account is not scored
    assert list(health["segment"]) == ["enterprise"]       # 'Enterprise' matches the enterprise rule
    metrics = pipeline.query(f"SELECT * FROM core.account_metrics WHERE snapshot_date = '{NEXT}' "
                             "AND account_id = 'A1'")
    assert metrics["power_contacts_total"][0] == 1         # ' ADMIN' is a power role


def test_a_tracked_event_spelled_in_another_case_is_reported(pipeline: Pipeline):
    data = valid()
    data.events += [dict(event_id=str(i), user_id="u1", session_id="1", time=f"{DAY} 12:00:00",
                         event_table_name="Run_Query") for i in (10, 11)]
    meta = extract(pipeline, data)
    assert meta["event_names_in_another_case"] == "Run_Query (2 events; tracked as run_query)"
    assert meta["events_loaded"] == 4


def test_source_columns_named_like_the_loaders_helpers_do_not_collide(pipeline: Pipeline):
    data = valid()
    data.events.append(dict(event_id="20", user_id=None, session_id="1", time=f"{DAY} 12:00:00",
                            event_table_name="run_query"))
    data.write(pipeline.raw_dir)
    events = pd.read_parquet(pipeline.raw_dir / "all_events.parquet")
    events["filename"], events["source_file"], events["source_row"] = "x.csv", "elsewhere.parquet", 999
    events.to_parquet(pipeline.raw_dir / "all_events.parquet", index=False)
    pipeline.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    [row] = [q for q in quarantined(pipeline) if q[1] == "null_user_id"]
    source = pipeline.query("SELECT source_file FROM raw.quarantine WHERE reason = 'null_user_id'")["source_file"][0]
    assert source == str(pipeline.raw_dir / "all_events.parquet") and row[3] == 4


def test_a_ragged_csv_row_names_its_file_and_line(pipeline: Pipeline):
    valid().write(pipeline.raw_dir, "csv")
    path = pipeline.raw_dir / "sessions.csv"
    path.write_text(path.read_text() + "3,u1,2026-08-10 10:00:00,extra\n")
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert cls == "RawInputError"
    assert message.startswith(f"raw table 'sessions' ({path}) cannot be read: ")
    assert "Line: 4" in message and "Expected Number of Columns: 3 Found: 4" in message


def test_a_corrupt_parquet_file_in_a_folder_is_named(pipeline: Pipeline):
    valid().write(pipeline.raw_dir)
    folder = pipeline.raw_dir / "all_events"
    folder.mkdir()
    shutil.move(pipeline.raw_dir / "all_events.parquet", folder / "good.parquet")
    (folder / "broken.parquet").write_bytes(b"PAR1 not really parquet")
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert cls == "RawInputError" and message.startswith(f"raw table 'all_events' ({folder / 'broken.parquet'})")


# --- errors that name the thing -------------------------------------------------------------------

def test_a_bad_duckdb_memory_limit_names_the_variable(monkeypatch):
    from health_pipeline.settings import duckdb_limits

    monkeypatch.setenv("HEALTH_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match=r"^HEALTH_DUCKDB_MEMORY_LIMIT='lots' is not a DuckDB memory limit, "
                                         r"such as '2GB' \(Parser Error"):
        duckdb_limits()
    monkeypatch.setenv("HEALTH_DUCKDB_MEMORY_LIMIT", "2GB")
    monkeypatch.setenv("HEALTH_DUCKDB_THREADS", "many")
    with pytest.raises(ValueError, match=r"^HEALTH_DUCKDB_THREADS='many' is not a whole number of threads"):
        duckdb_limits()


def test_bad_known_gaps_and_snapshot_drop_name_their_variable(monkeypatch):
    from health_pipeline.settings import raw_source_options

    monkeypatch.setenv("HEALTH_KNOWN_GAPS", "2026-07-04, July 5")
    with pytest.raises(ValueError, match=r"^HEALTH_KNOWN_GAPS: 'July 5' is not a YYYY-MM-DD date$"):
        raw_source_options()
    monkeypatch.setenv("HEALTH_KNOWN_GAPS", "2026-07-04,2026-07-05")
    monkeypatch.setenv("HEALTH_SNAPSHOT_MAX_DROP", "50%")
    with pytest.raises(ValueError, match=r"^HEALTH_SNAPSHOT_MAX_DROP='50%' is not a share from 0 to 1$"):
        raw_source_options()
    monkeypatch.setenv("HEALTH_SNAPSHOT_MAX_DROP", "0.25")
    assert raw_source_options() == {"known_gaps": ["2026-07-04", "2026-07-05"], "snapshot_max_drop": 0.25}


def test_a_warehouse_path_with_a_question_mark_is_refused_by_name(tmp_path):
    from health_pipeline.resources import Warehouse, WarehouseError

    path = tmp_path / "what?" / "warehouse.duckdb"
    with pytest.raises(WarehouseError, match=r"^HEALTH_WAREHOUSE=.*'\?' in a path as the start of connection"):
        with Warehouse(database=str(path)).get_connection(create=True):
            pass


def test_a_warehouse_that_cannot_be_opened_fails_at_once_without_lock_retries(tmp_path, monkeypatch):
    """Only a lock held by another process is worth waiting for; a permission error is not."""
    import duckdb

    from health_pipeline import resources

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise duckdb.IOException('IO Error: Cannot open file "/data/warehouse.duckdb": Permission denied')

    monkeypatch.setattr(resources.duckdb, "connect", refuse)
    with pytest.raises(resources.WarehouseError, match=r"cannot be opened: IO Error: .*Permission denied"):
        with resources.Warehouse(database=str(tmp_path / "w.duckdb")).get_connection(create=True):
            pass
    assert len(calls) == 1


def test_running_out_of_memory_says_so_and_names_the_setting(tmp_path):
    pipeline = Pipeline(tmp_path, memory_limit="2MB")
    data = valid()
    data.events += [dict(event_id=str(i), user_id="u1", session_id="1", time=f"{DAY} 12:00:00",
                         event_table_name="run_query") for i in range(100, 30000)]
    data.write(pipeline.raw_dir)
    cls, message = pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert cls == "WarehouseError"
    assert message.startswith("DuckDB ran out of memory (memory limit 2MB): raise HEALTH_DUCKDB_MEMORY_LIMIT")


def test_a_raw_path_with_glob_characters_is_read_as_it_is(tmp_path):
    pipeline = Pipeline(tmp_path / "exports [2026] *")
    data = valid()
    data.write(pipeline.raw_dir)
    folder = pipeline.raw_dir / "all_events"
    folder.mkdir()
    shutil.move(pipeline.raw_dir / "all_events.parquet", folder / "part[0].parquet")
    meta = Pipeline.raw_activity_metadata(pipeline.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS))
    assert meta["events_read"] == 3


def test_an_export_folder_that_cannot_be_written_leaves_the_sync_table_unchanged(tmp_path):
    """Before, export.account_health was committed and then no file could be written."""
    pipeline = Pipeline(tmp_path)
    valid().write(pipeline.raw_dir)
    pipeline.export_dir.parent.mkdir(parents=True, exist_ok=True)
    pipeline.export_dir.write_text("a file where the export folder should be")
    result = pipeline.run(DAY, NEXT)
    assert not result.success
    assert "sync_export" not in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    tables = pipeline.query("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'export'")["table_name"]
    for table in tables:
        assert pipeline.query(f"SELECT count(*) AS n FROM export.{table}")["n"][0] == 0, table
