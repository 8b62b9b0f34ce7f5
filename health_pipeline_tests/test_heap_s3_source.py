"""The Heap Connect S3 source: a delivery (manifests and Avro dumps) is the same raw data as the
export it was written from, through every rule of the delivery, whether it is read from a local
copy of the bucket or from an S3-compatible server; and malformed deliveries stop the run naming
the manifest and the file, with nothing landed.

The sample written as a delivery (sample.write_heap_delivery) exercises the rules at once: users
first delivered without their identity and updated by a later dump, events delivered again, an
event table whose early dumps hold rows of an older definition that a full resync replaces, and
a table split over two files. Crafted deliveries below test each rule on its own, with Avro
written as Heap types it (a UTC timestamp-millis time), which polars cannot write.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import shutil
import socket
from pathlib import Path

import duckdb
import fastavro
import polars as pl
import pytest

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.raw_input import RawInputError
from health_pipeline.sample import DUMP_DAYS, OLD_DEFINITION_ID, SampleSpec, generate_sample, write_heap_delivery
from health_pipeline.sources import HeapS3Source, source_kind
from health_pipeline.sources.heap_s3 import Delivery, land
from health_pipeline.sources.landing import Landing
from health_pipeline_tests.conftest import Pipeline, export_files, sync_table
from health_pipeline_tests.table_digests import table_digests

# Three weekly dumps: one before the dump that delivers events again (share_report's older rows in
# it), the one it follows, and one after the full resync; the delivery's every rule, in 21 days.
SPEC = SampleSpec(accounts=10, days=21, seed=1)  # seed 7 leaves a day without counted activity at 21 days
FIRST, LAST = SPEC.start, SPEC.end
BUCKET = "heap-rs3-sample"
UTC = dt.timezone.utc
# What raw_activity writes (the quarantine is compared on its own, below).
RAW_TABLES = ("raw.events", "raw.sessions", "raw.accounts", "raw.contacts", "raw.identity_map", "raw.outcomes",
              "raw.account_history", "raw.contact_history", "core.daily_contact_activity")


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, Path, dict]:
    """The sample in folder layout, the same sample as a delivery (a local copy of its bucket), and
    what the delivery's writer says of its dumps."""
    root = tmp_path_factory.mktemp("sample")
    generate_sample(root / "folder", SPEC)
    written = write_heap_delivery(root / "folder", root / "delivery")
    return root / "folder", root / "delivery", written


def folder_pipeline(root: Path, folder: Path) -> Pipeline:
    shutil.copytree(folder, root / "raw")
    return Pipeline(root)


def delivery_pipeline(root: Path, location: str) -> Pipeline:
    return Pipeline(root, source=functools.partial(HeapS3Source, location=location, landing_dir=str(root / "landing"),
                                                   crm_dir=str(root.parent / "crm")))


def raw_tables(pipeline: Pipeline) -> dict:
    """Every raw table's digest (table_digests), the quarantine's without the file and row each bad
    row came from, which are the landed file's in a delivery."""
    with duckdb.connect(str(pipeline.root / "warehouse.duckdb"), read_only=True) as conn:
        digests = table_digests(conn, only=RAW_TABLES)
        digests["raw.quarantine"] = conn.execute(
            "SELECT partition_date, source_table, reason, row_json FROM raw.quarantine ORDER BY ALL").fetchall()
    return digests


def without_history(tables: dict) -> dict:
    return {name: value for name, value in tables.items() if name != "raw.contact_history"}


def current_contacts(pipeline: Pipeline) -> list[tuple]:
    return pipeline.query("SELECT * EXCLUDE (valid_from, valid_to) FROM raw.contact_history "
                          "WHERE valid_to IS NULL ORDER BY user_id").to_records(index=False).tolist()


def test_a_delivery_lands_as_the_raw_tables_of_the_export_it_was_written_from(sample, tmp_path):
    """Landed in two runs, as a daily schedule would: first the weekly dumps up to halfway, then the
    dump that delivers events again and updates users, the full resync of share_report, which
    replaces the rows of its older definition that the first run landed, and the dumps after."""
    folder, written, dumps = sample
    delivery = shutil.copytree(written, tmp_path / "bucket")
    shutil.copytree(written, tmp_path / "crm")  # the CRM's accounts and outcomes sit beside the delivery
    expected = folder_pipeline(tmp_path / "folder", folder)
    expected.materialize(FIRST, LAST, selection=RAW_ACTIVITY_ASSETS)
    later = [delivery / "manifests" / f"sync_{dump}.json" for dump in range(dumps["redelivery_dump"],
                                                                             dumps["dumps"] + 1)]
    for manifest in later:
        manifest.rename(manifest.with_suffix(".later"))
    landed = delivery_pipeline(tmp_path / "landed", str(delivery))
    halfway = FIRST + dt.timedelta(days=DUMP_DAYS * (dumps["redelivery_dump"] - 1) - 1)  # the days delivered so far
    first = landed.raw_activity_metadata(landed.materialize(FIRST, halfway, selection=RAW_ACTIVITY_ASSETS))
    assert raw_tables(landed) != raw_tables(expected)  # users without identities, share_report's old rows
    for manifest in later:
        manifest.with_suffix(".later").rename(manifest)
    second = landed.raw_activity_metadata(landed.materialize(FIRST, LAST, selection=RAW_ACTIVITY_ASSETS))
    # The contacts identified by the later dump are a change the history records from the day after
    # the last one a run processed (docs/sources.md), so their history has a version more; what is
    # in force now is the export's.
    assert without_history(raw_tables(landed)) == without_history(raw_tables(expected))
    assert current_contacts(landed) == current_contacts(expected)
    assert first["source.source"] == "heap_s3"
    assert first["source.dumps_read"] == ", ".join(str(d) for d in range(1, dumps["redelivery_dump"]))
    assert second["source.dumps_read"] == ", ".join(str(d) for d in range(dumps["redelivery_dump"],
                                                                           dumps["dumps"] + 1))
    assert second["source.resynced_tables"] == f"share_report (dump {dumps['resync_dump']})"
    # The days the later dumps changed: those with rows of share_report's older definition, which the
    # resync drops, and the days delivered for the first time; run_query's rows delivered again
    # change none. The run extracted them all, so none is left stale.
    old_definition = pl.concat([pl.read_avro(f) for f in sorted(delivery.glob("sync_*/share_report/*.avro"))])
    old_days = set(old_definition.filter(pl.col("event_id") >= OLD_DEFINITION_ID)["time"].dt.date())
    new_days = {halfway + dt.timedelta(days=n) for n in range(1, (LAST - halfway).days + 1)}
    assert second["source.days_changed"] == ", ".join(map(str, sorted(old_days | new_days)))
    assert second["source.stale_days_left"] == "none" and not landed.raw_source.stale_days()


def test_a_delivery_in_an_s3_compatible_store_is_read_like_its_local_copy(sample, tmp_path, monkeypatch):
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    _, delivery, _ = sample
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                            "AWS_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        s3 = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
                               allow_bucket_creation=True)
        s3.create_dir(BUCKET)
        for path in sorted(p for p in delivery.rglob("*") if p.is_file()):
            with s3.open_output_stream(f"{BUCKET}/{path.relative_to(delivery).as_posix()}") as out:
                out.write(path.read_bytes())
        assert source_kind(f"s3://{BUCKET}") == "heap_s3"
        from_s3, from_copy = Landing(tmp_path / "s3"), Landing(tmp_path / "copy")
        read = land(Delivery(f"s3://{BUCKET}"), from_s3)
        land(Delivery(str(delivery)), from_copy)
    finally:
        server.stop()
    assert read["dumps_read"].startswith("1, 2, ")
    assert landed_rows(from_s3.root) == landed_rows(from_copy.root)
    assert from_s3.state == from_copy.state


def landed_rows(root: Path) -> dict:
    """Each landed table's rows, as sorted text."""
    with duckdb.connect() as conn:
        return {name: conn.execute(f"SELECT * FROM read_parquet('{root}/{pattern}', union_by_name = true) "
                                   "ORDER BY ALL").fetchall()
                for name, pattern in (("events", "all_events/**/*.parquet"), ("sessions", "sessions/**/*.parquet"),
                                      ("users", "users.parquet"), ("migrations", "user_migrations.parquet"))}


@pytest.mark.slow
def test_a_delivery_gives_the_same_exports_as_its_folder_sample(sample, tmp_path):
    folder, delivery, _ = sample
    shutil.copytree(delivery, tmp_path / "crm")
    expected = folder_pipeline(tmp_path / "folder", folder)
    expected.materialize(FIRST, LAST)
    landed = delivery_pipeline(tmp_path / "landed", str(delivery))
    landed.materialize(FIRST, LAST)
    assert sync_table(landed.root / "warehouse.duckdb").equals(sync_table(expected.root / "warehouse.duckdb"))
    expected_files, landed_files = export_files(expected.root), export_files(landed.root)
    assert sorted(expected_files) == sorted(landed_files)
    for path, content in expected_files.items():
        other = landed_files[path]
        assert content.equals(other) if hasattr(content, "equals") else content == other, path


# --- crafted deliveries: each rule on its own ------------------------------------------------------

def at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 7, day, hour, tzinfo=UTC)


EVENT_SCHEMA = [("event_id", "long"), ("user_id", "long"), ("session_id", "long"),
                ("time", {"type": "long", "logicalType": "timestamp-millis"}), ("path", "string")]
USER_SCHEMA = [("user_id", "long"), ("identity", "string"), ("joindate", {"type": "long", "logicalType":
                                                                          "timestamp-millis"}),
               ("account_id", "string"), ("role", "string")]


class CraftedDelivery:
    """A local copy of a bucket, written dump by dump with fastavro."""

    def __init__(self, root: Path):
        self.root = root
        (root / "manifests").mkdir(parents=True, exist_ok=True)

    def dump(self, dump_id: int, tables: dict, full: tuple[str, ...] = ()) -> None:
        listed = []
        for name, (schema, rows) in tables.items():
            key = f"sync_{dump_id}/{name}/part-00000.avro"
            (self.root / key).parent.mkdir(parents=True, exist_ok=True)
            avro = {"type": "record", "name": name,
                    "fields": [{"name": c, "type": ["null", t]} for c, t in schema]}
            with open(self.root / key, "wb") as out:
                fastavro.writer(out, fastavro.parse_schema(avro), rows)
            listed.append({"name": name, "columns": [c for c, _ in schema], "files": [f"s3://{BUCKET}/{key}"],
                           "incremental": name not in full})
        (self.root / "manifests" / f"sync_{dump_id}.json").write_text(
            json.dumps({"dump_id": dump_id, "tables": listed}))


def event(event_id: int, day: int, user: int = 1) -> dict:
    return {"event_id": event_id, "user_id": user, "session_id": 1, "time": at(day), "path": "/"}


def events_landed(landing: Landing) -> list[tuple]:
    with duckdb.connect() as conn:
        return conn.execute(f"SELECT event_table_name, event_id, CAST(time AS VARCHAR) FROM read_parquet("
                            f"'{landing.root}/all_events/**/*.parquet', hive_partitioning = false) ORDER BY ALL"
                            ).fetchall()


@pytest.fixture
def crafted(tmp_path) -> tuple[CraftedDelivery, Landing]:
    return CraftedDelivery(tmp_path / "bucket"), Landing(tmp_path / "landing")


def test_each_table_is_landed_once_and_a_run_reads_only_the_dumps_it_has_not_landed(crafted):
    delivery, landing = crafted
    delivery.dump(1, {"run_query": (EVENT_SCHEMA, [event(1, 1), event(2, 2)])}, full=("run_query",))
    assert land(Delivery(str(delivery.root)), landing)["dumps_read"] == "1"
    assert land(Delivery(str(delivery.root)), landing)["dumps_read"] == "none: every dump is landed"
    delivery.dump(2, {"run_query": (EVENT_SCHEMA, [event(3, 3)]), "pageviews": (EVENT_SCHEMA, [event(4, 3)])})
    read = land(Delivery(str(delivery.root)), landing)
    assert (read["dumps_read"], read["rows_landed.run_query"], read["rows_landed.pageviews"]) == ("2", 1, 1)
    # UTC timestamp-millis land as naive UTC; the table's name is the event's name, pageviews too.
    assert events_landed(landing) == [("pageviews", 4, "2026-07-03 12:00:00"), ("run_query", 1, "2026-07-01 12:00:00"),
                                      ("run_query", 2, "2026-07-02 12:00:00"), ("run_query", 3, "2026-07-03 12:00:00")]
    assert landing.state["tables"]["run_query"]["dump"] == 2


def test_a_full_resync_replaces_what_was_landed_for_that_table_and_makes_exactly_its_changed_days_stale(crafted):
    delivery, landing = crafted
    delivery.dump(1, {"run_query": (EVENT_SCHEMA, [event(1, 1), event(2, 2), event(3, 3)]),
                      "group_by": (EVENT_SCHEMA, [event(9, 2)])}, full=("run_query", "group_by"))
    land(Delivery(str(delivery.root)), landing)
    landing.forget_stale_days(dt.date(2026, 7, 1), dt.date(2026, 7, 31))  # a run extracted them
    # The definition changed: day 1's event is no longer matched, day 2's is unchanged, day 4 gains one.
    delivery.dump(2, {"run_query": (EVENT_SCHEMA, [event(2, 2), event(3, 3), event(5, 4)])}, full=("run_query",))
    read = land(Delivery(str(delivery.root)), landing)
    assert read["resynced_tables"] == "run_query (dump 2)"
    assert [row[:2] for row in events_landed(landing)] == [("group_by", 9), ("run_query", 2), ("run_query", 3),
                                                           ("run_query", 5)]
    assert landing.stale_days() == [dt.date(2026, 7, 1), dt.date(2026, 7, 4)]
    landing.forget_stale_days(dt.date(2026, 7, 1), dt.date(2026, 7, 1))
    assert landing.stale_days() == [dt.date(2026, 7, 4)]


def test_an_event_delivered_again_changes_no_day_and_a_late_one_makes_its_day_stale(crafted):
    delivery, landing = crafted
    delivery.dump(1, {"run_query": (EVENT_SCHEMA, [event(1, 1), event(2, 2)])}, full=("run_query",))
    land(Delivery(str(delivery.root)), landing)
    landing.forget_stale_days(dt.date(2026, 7, 1), dt.date(2026, 7, 31))
    delivery.dump(2, {"run_query": (EVENT_SCHEMA, [event(1, 1), event(7, 2)])})  # 1 again; 7 arrives late
    land(Delivery(str(delivery.root)), landing)
    assert [row[1] for row in events_landed(landing)] == [1, 1, 2, 7]  # raw_activity drops the copy of 1
    assert landing.stale_days() == [dt.date(2026, 7, 2)]


def test_a_later_dumps_user_replaces_the_earlier_one(crafted):
    delivery, landing = crafted
    joined = at(1)
    delivery.dump(1, {"users": (USER_SCHEMA, [
        {"user_id": 1, "identity": None, "joindate": joined, "account_id": "A1", "role": None},
        {"user_id": 2, "identity": "b@x.com", "joindate": joined, "account_id": "A1", "role": "admin"}])},
        full=("users",))
    delivery.dump(2, {"users": (USER_SCHEMA, [
        {"user_id": 1, "identity": "a@x.com", "joindate": joined, "account_id": "A2", "role": "analyst"}])})
    land(Delivery(str(delivery.root)), landing)
    with duckdb.connect() as conn:
        users = conn.execute(f"SELECT user_id, identity, account_id, role FROM '{landing.root}/users.parquet' "
                             "ORDER BY user_id").fetchall()
    assert users == [(1, "a@x.com", "A2", "analyst"), (2, "b@x.com", "A1", "admin")]


@pytest.mark.parametrize("written, time, landed", [
    ("text with an offset", "2026-07-01T23:30:00-02:00", "2026-07-02 01:30:00"),
    ("epoch milliseconds", 1782907200000, "2026-07-01 12:00:00"),
    ("epoch microseconds", 1782907200000000, "2026-07-01 12:00:00"),
])
def test_a_time_written_as_text_or_a_number_lands_as_utc(crafted, written, time, landed):
    delivery, landing = crafted
    kind = "string" if isinstance(time, str) else "long"
    schema = [(c, kind if c == "time" else t) for c, t in EVENT_SCHEMA]
    delivery.dump(1, {"run_query": (schema, [{**event(1, 1), "time": time}])})
    land(Delivery(str(delivery.root)), landing)
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        (value,) = conn.execute(f"SELECT CAST(CAST(time AS TIMESTAMPTZ) AS VARCHAR) FROM read_parquet("
                                f"'{landing.root}/all_events/**/*.parquet')").fetchone()
    assert value.removesuffix("+00") == landed


def assert_refused_and_nothing_landed(delivery: CraftedDelivery, landing: Landing, *expected: str) -> None:
    before = (landing.state, sorted(p.relative_to(landing.root) for p in landing.root.rglob("*.parquet"))
              if landing.root.exists() else [])
    with pytest.raises(RawInputError) as refused:
        land(Delivery(str(delivery.root)), landing)
    message = str(refused.value)
    assert "\n" not in message and all(part in message for part in expected), message
    after = (landing.state, sorted(p.relative_to(landing.root) for p in landing.root.rglob("*.parquet")))
    assert after == before


def test_a_manifest_that_lists_a_missing_file_stops_the_landing_naming_both(crafted):
    delivery, landing = crafted
    delivery.dump(1, {"run_query": (EVENT_SCHEMA, [event(1, 1)]), "group_by": (EVENT_SCHEMA, [event(2, 1)])})
    (delivery.root / "sync_1" / "group_by" / "part-00000.avro").unlink()
    assert_refused_and_nothing_landed(delivery, landing, "sync_1/group_by/part-00000.avro", "does not exist",
                                      "manifests/sync_1.json")


def test_a_file_that_is_not_avro_stops_the_landing_naming_it(crafted):
    delivery, landing = crafted
    delivery.dump(1, {"run_query": (EVENT_SCHEMA, [event(1, 1)])})
    (delivery.root / "sync_1" / "run_query" / "part-00000.avro").write_bytes(b"PAR1 not avro at all")
    assert_refused_and_nothing_landed(delivery, landing, "sync_1/run_query/part-00000.avro",
                                      "cannot be read as Avro", "manifests/sync_1.json")


def test_a_column_whose_type_changes_between_incremental_dumps_stops_the_landing(crafted):
    delivery, landing = crafted
    delivery.dump(1, {"run_query": (EVENT_SCHEMA, [event(1, 1)])})
    land(Delivery(str(delivery.root)), landing)
    as_text = [(c, "string" if c == "user_id" else t) for c, t in EVENT_SCHEMA]
    delivery.dump(2, {"run_query": (as_text, [{**event(2, 2), "user_id": "u-2"}])})
    assert_refused_and_nothing_landed(delivery, landing, "table 'run_query' column 'user_id' is text",
                                      "sync_2/run_query/part-00000.avro", "manifests/sync_2.json")
    # A full resync may redefine the table; the dump it supersedes is not read.
    delivery.dump(3, {"run_query": (as_text, [{**event(2, 2), "user_id": "u-2"}])}, full=("run_query",))
    assert land(Delivery(str(delivery.root)), landing)["dumps_read"] == "3"
    assert [row[1] for row in events_landed(landing)] == [2]


def test_a_manifest_that_is_not_a_dump_manifest_is_refused_naming_it(crafted):
    delivery, landing = crafted
    (delivery.root / "manifests" / "sync_1.json").write_text(json.dumps({"dump": 1}))
    assert_refused_and_nothing_landed(delivery, landing, "manifests/sync_1.json", "is not a dump manifest")


def test_a_bucket_path_without_a_manifest_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RawInputError, match="no Heap manifests"):
        land(Delivery(str(tmp_path / "empty")), Landing(tmp_path / "landing"))


def test_the_delivery_is_recognised_by_its_manifests_folder(sample, tmp_path):
    folder, delivery, _ = sample
    assert (source_kind(str(delivery)), source_kind(str(folder))) == ("heap_s3", "folder")
    with pytest.raises(ValueError, match="HEALTH_SOURCE='kafka' is not a source"):
        source_kind(str(folder), "kafka")


def test_the_delivery_avro_is_read_column_by_column_whatever_properties_a_table_carries(tmp_path):
    """A table's own property columns (pageviews' path, an event's library) are not landed."""
    rows = io.BytesIO()
    fastavro.writer(rows, fastavro.parse_schema({"type": "record", "name": "t", "fields": [
        {"name": "event_id", "type": "long"}, {"name": "user_id", "type": "long"},
        {"name": "session_id", "type": "long"}, {"name": "time", "type": {"type": "long",
                                                                         "logicalType": "timestamp-millis"}},
        {"name": "Referrer_Domain", "type": ["null", "string"]}]}),
        [{"event_id": 1, "user_id": 1, "session_id": 1, "time": at(1), "Referrer_Domain": "x"}])
    delivery = CraftedDelivery(tmp_path / "bucket")
    (delivery.root / "sync_1" / "pageviews").mkdir(parents=True)
    (delivery.root / "sync_1" / "pageviews" / "part-00000.avro").write_bytes(rows.getvalue())
    (delivery.root / "manifests" / "sync_1.json").write_text(json.dumps({"dump_id": 1, "tables": [
        {"name": "pageviews", "columns": [], "files": [f"s3://{BUCKET}/sync_1/pageviews/part-00000.avro"],
         "incremental": True}]}))
    land(Delivery(str(delivery.root)), Landing(tmp_path / "landing"))
    with duckdb.connect() as conn:
        columns = [c for c, *_ in conn.execute(f"DESCRIBE SELECT * FROM read_parquet('{tmp_path}/landing/all_events/"
                                               "**/*.parquet', hive_partitioning = false)").fetchall()]
    assert columns == ["event_id", "user_id", "session_id", "time", "event_table_name"]
