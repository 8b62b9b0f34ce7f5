"""Heap Connect's S3 delivery, read where it lands: a local copy of the bucket, or the bucket itself
through an S3-compatible API, landed incrementally as the contract's folder layout.

What Heap delivers (its "Heap Connect for S3" specification): a periodic dump of Avro files, and
for each dump a manifest `manifests/sync_<dump_id>.json` that lists, per table, its columns, its
files (full `s3://<bucket>/<key>` paths, several per table) and whether the dump is incremental.
The tables are `users`, `sessions`, `user_migrations`, `pageviews` and one table per defined
event; there is no `all_events`.

How it is read:
- Manifests in dump order. A table's bookmark (the last dump landed) means a run reads only the
  dumps it has not processed.
- Event tables (every table but users, sessions and user_migrations; `pageviews` included) land
  under `all_events/<table>/day=<UTC day>/`, with the table's name as `event_table_name`, whatever
  other columns they carry; sessions under `sessions/day=<day>/`. A later dump that delivers an
  event again lands beside the first copy: raw_activity deduplicates by id, as for any export.
- A table's dump with `incremental: false` is a full resync: it replaces everything landed for
  that table before, and the table's earlier dumps that are not landed yet are not read at all.
- `users` and `user_migrations` are updated, not appended: a later dump's rows for a user_id (or
  from_user_id) replace the earlier ones (`users.parquet`, `user_migrations.parquet`).
- Avro is decoded by polars' columnar reader into Arrow, and DuckDB writes the landed parquet
  (sorted by time, one file per dump, table and day), so no row passes through Python.
- Days whose landed rows changed (a resync, late or corrected rows) are recorded as stale until a
  run extracts them again (landing.Landing).
- A manifest that lists a missing file, a column whose type changes between incremental dumps,
  or a file that is not Avro stops the run with a RawInputError naming the manifest and the file,
  and nothing is landed or published.

The accounts and outcomes, and the optional signal tables (csm_pulse, tickets, nps_responses,
invoices), come from the CRM, not from Heap: they are read from the CRM folder (`crm_dir`, else
the delivery's own folder when it is local), in the folder layout, in our names or the CRM's own
through the CRM mapping.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from health_pipeline.raw_input import RawInputError
from health_pipeline.redaction import redact
from health_pipeline.sources.landing import LandedSource, Landing, time_kind

MANIFESTS = "manifests"
_MANIFEST_NAME = re.compile(r"^sync_(\d+)\.json$")
# Heap's tables that are not events, and the table of the contract each lands as.
NOT_EVENTS = {"users": "users", "sessions": "sessions", "user_migrations": "user_migrations"}


@dataclass(frozen=True)
class DumpTable:
    name: str
    columns: tuple[str, ...]
    files: tuple[str, ...]
    incremental: bool


@dataclass(frozen=True)
class Manifest:
    dump_id: int
    path: str  # where the manifest was read, for messages
    tables: tuple[DumpTable, ...]


class Delivery:
    """Where the dumps are: a local folder (a copy of the bucket) or `s3://bucket/prefix`."""

    def __init__(self, location: str):
        self.location = location
        # Seconds spent decoding Avro (summed over the threads that decode), the delivery's own
        # cost beyond a parquet export's.
        self.avro_seconds, self.timing = 0.0, threading.Lock()
        if location.startswith("s3://"):
            self.filesystem, self.root = _s3_filesystem(), location.removeprefix("s3://").rstrip("/")
        else:
            self.filesystem, self.root = pafs.LocalFileSystem(), str(Path(location).resolve())

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def manifests(self) -> list[Manifest]:
        """Every manifest of the delivery, in dump order."""
        selector = pafs.FileSelector(f"{self.root}/{MANIFESTS}", allow_not_found=True)
        found = []
        for info in self._call(lambda: self.filesystem.get_file_info(selector), self.location):
            match = _MANIFEST_NAME.match(info.base_name)
            if match and info.type == pafs.FileType.File:
                found.append((int(match[1]), info.path))
        return [self._manifest(path) for _, path in sorted(found)]

    def _manifest(self, path: str) -> Manifest:
        shown = self.shown(path)
        raw = self._call(lambda: self.filesystem.open_input_file(path).readall(), shown)
        try:
            body = json.loads(raw)
            tables = tuple(
                DumpTable(t["name"], tuple(t.get("columns", ())), tuple(t["files"]), bool(t["incremental"]))
                for t in body["tables"])
            return Manifest(int(body["dump_id"]), shown, tables)
        except (ValueError, KeyError, TypeError) as exc:
            raise RawInputError(f"Heap manifest {shown} is not a dump manifest "
                                f"({{dump_id, tables: [{{name, columns, files, incremental}}]}}): {exc}") from None

    def file_path(self, manifest: Manifest, url: str) -> str:
        """A manifest's `s3://<bucket>/<key>` as a path of the filesystem: `<root>/<key>` in a local
        copy of the bucket, the object itself in S3."""
        if not url.startswith("s3://"):
            raise RawInputError(f"Heap manifest {manifest.path} lists {url!r}, which is not an s3:// path")
        bucket_and_key = url.removeprefix("s3://")
        return f"{self.root}/{bucket_and_key.split('/', 1)[1]}" if self.is_local else bucket_and_key

    def read_avro(self, manifest: Manifest, url: str) -> pa.Table:
        """One Avro file of a dump as Arrow, decoded column by column by polars."""
        import polars as pl

        path = self.file_path(manifest, url)
        where = f"{self.shown(path)} (listed in {manifest.path})"
        info = self._call(lambda: self.filesystem.get_file_info(path), where)
        if info.type != pafs.FileType.File:
            raise RawInputError(f"Heap delivery: {where} does not exist")
        data = self._call(lambda: self.filesystem.open_input_file(path).readall(), where)
        started = time.perf_counter()
        try:
            return pl.read_avro(io.BytesIO(data)).to_arrow()
        except Exception as exc:  # polars raises several kinds for a file that is not Avro
            raise RawInputError(f"Heap delivery: {where} cannot be read as Avro: "
                                f"{redact(str(exc).splitlines()[0])}") from None
        finally:
            with self.timing:
                self.avro_seconds += time.perf_counter() - started

    def shown(self, path: str) -> str:
        return path if self.is_local else f"s3://{path}"

    @staticmethod
    def _call(action, where: str):
        try:
            return action()
        except (OSError, pa.ArrowException) as exc:
            raise RawInputError(f"Heap delivery: cannot read {where}: {redact(str(exc).splitlines()[0])}") from None


def _s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow's S3 client. Credentials come from the usual AWS environment variables or a
    profile (never from the pipeline's settings); AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL points
    it at an S3-compatible store, and AWS_REGION or AWS_DEFAULT_REGION names the region."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    options = {"region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    if endpoint:
        scheme, _, host = endpoint.rpartition("://")
        options |= {"endpoint_override": host.rstrip("/"), "scheme": scheme or "https"}
    return pafs.S3FileSystem(**options)


# The contract's columns each kind of table lands with (events also get event_table_name).
ACTIVITY_COLUMNS = {"events": ("event_id", "user_id", "session_id", "time"),
                    "sessions": ("session_id", "user_id", "time")}
DIMENSION_KEYS = {"users": "user_id", "user_migrations": "from_user_id"}


def land(delivery: Delivery, landing: Landing, log=None) -> dict:
    """Land every table's dumps that the landing has not landed yet, in dump order, as one batch;
    return what was read, for the raw stage's metadata."""
    manifests = delivery.manifests()
    if not manifests:
        raise RawInputError(f"no Heap manifests in {redact(delivery.location)}: expected "
                            f"{MANIFESTS}/sync_<dump_id>.json, as Heap Connect for S3 delivers them")
    bookmarks = landing.state["tables"]
    new = [(m, t) for m in manifests for t in m.tables if m.dump_id > bookmarks.get(t.name, {}).get("dump", -1)]
    # A table's dumps before its latest full resync are replaced by it: they need not be read.
    last_full = {t.name: m.dump_id for m, t in new if not t.incremental}
    new = [(m, t) for m, t in new if m.dump_id >= last_full.get(t.name, -1)]
    if not new:
        return {"dumps_read": "none: every dump is landed", "last_dump": manifests[-1].dump_id, "days_changed": "none"}
    dumps = [(m, [t for n, t in new if n is m]) for m in sorted({m for m, _ in new}, key=lambda m: m.dump_id)]
    # The Avro files of the next dump are decoded on other cores while this one is written.
    with landing.batch("heap_s3") as batch, ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        def decoding(manifest: Manifest, tables: list[DumpTable]) -> dict:
            return {url: pool.submit(delivery.read_avro, manifest, url) for t in tables for url in t.files}

        ahead = decoding(*dumps[0])
        for number, (manifest, tables) in enumerate(dumps):
            decoded, ahead = ahead, decoding(*dumps[number + 1]) if number + 1 < len(dumps) else {}
            if log:
                log(f"landing Heap dump {manifest.dump_id}: {len(tables)} tables, "
                    f"{sum(len(t.files) for t in tables):,} files")
            for table in tables:
                _land_table(delivery, batch, manifest, table, {url: decoded[url].result() for url in table.files})
    ids = [m.dump_id for m, _ in dumps]
    return {"dumps_read": ", ".join(map(str, ids)), "last_dump": ids[-1],
            "avro_seconds": round(delivery.avro_seconds, 2),
            # A full dump of a table landed before: its rows were replaced.
            "resynced_tables": ", ".join(f"{t.name} (dump {m.dump_id})" for m, t in new
                                         if not t.incremental and _landed_before(t.name, m, new, bookmarks)) or "none",
            **{f"rows_landed.{name}": n for name, n in sorted(batch.rows.items())},
            "days_changed": _days(batch.days_changed)}


def _landed_before(table: str, manifest: Manifest, new: list, bookmarks: dict) -> bool:
    return table in bookmarks or any(t.name == table and m.dump_id < manifest.dump_id for m, t in new)


def _days(days) -> str:
    return ", ".join(map(str, days)) or "none"


def _land_table(delivery: Delivery, batch, manifest: Manifest, table: DumpTable, decoded: dict) -> None:
    """Land one table of a dump, its files already decoded (`decoded`: url -> Arrow)."""
    kind = "events" if table.name not in NOT_EVENTS else table.name
    state = batch.state["tables"].setdefault(table.name, {"types": {}})
    if not table.incremental:
        state["types"] = {}  # a full resync may redefine the table
        if kind in ("events", "sessions"):
            batch.replace(_folder(kind, table.name))
    for part, url in enumerate(table.files):
        rows = _lower_cased(decoded[url], delivery, manifest, url)
        landed = ACTIVITY_COLUMNS.get("events" if kind == "events" else kind) or tuple(rows.column_names)
        _check_types(state["types"], rows, landed, table.name, f"{delivery.shown(delivery.file_path(manifest, url))} "
                                                               f"(listed in {manifest.path})")
        if kind in DIMENSION_KEYS:
            batch.merge_dimension(f"{kind}.parquet", rows, DIMENSION_KEYS[kind], manifest.dump_id,
                                  replace=not table.incremental and part == 0, table_name=table.name)
        else:
            batch.add_activity(_folder(kind, table.name), rows, f"dump-{manifest.dump_id:09d}-part-{part:05d}-{{i}}",
                               {c: c in rows.column_names for c in landed}, time_kind(rows.schema), table.name,
                               events=kind == "events")
    state["dump"] = manifest.dump_id


def _folder(kind: str, table: str) -> str:
    return f"all_events/{table}" if kind == "events" else "sessions"


def _lower_cased(rows: pa.Table, delivery: Delivery, manifest: Manifest, url: str) -> pa.Table:
    """Column names as the contract matches them, whatever their case; two equal but for case are an error."""
    names = [name.lower() for name in rows.column_names]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise RawInputError(f"Heap delivery: {delivery.shown(delivery.file_path(manifest, url))} (listed in "
                            f"{manifest.path}) has the column '{twice[0]}' twice (names match whatever their case)")
    return rows.rename_columns(names)


def _type_family(dtype: pa.DataType) -> str | None:
    """What a column's values are, for telling a real change of type from a change of precision."""
    for family, test in (("integer", pa.types.is_integer), ("decimal", pa.types.is_floating),
                         ("decimal", pa.types.is_decimal), ("text", pa.types.is_string),
                         ("text", pa.types.is_large_string), ("timestamp", pa.types.is_timestamp),
                         ("date", pa.types.is_date), ("boolean", pa.types.is_boolean)):
        if test(dtype):
            return family
    return None if pa.types.is_null(dtype) else str(dtype)  # an all-null column fits any type


def _check_types(recorded: dict, rows: pa.Table, columns, table: str, where: str) -> None:
    """A landed column keeps its type from dump to dump (until a full resync redefines the table)."""
    for column in columns:
        if column not in rows.column_names or (family := _type_family(rows.schema.field(column).type)) is None:
            continue
        if recorded.setdefault(column, family) != family:
            raise RawInputError(f"Heap delivery: table '{table}' column '{column}' is {family} in {where}, but "
                                f"{recorded[column]} in the dumps landed before; only a full resync may change it")


class HeapS3Source(LandedSource):
    """Heap Connect's S3 delivery (`location`: a local copy of the bucket, or s3://bucket/prefix),
    landed under `landing_dir`; the CRM's accounts and outcomes from `crm_dir`."""

    location: str

    @property
    def kind(self) -> str:
        return "heap_s3"

    @property
    def crm_folder(self) -> Path:
        if self.crm_dir:
            return Path(self.crm_dir)
        if self.location.startswith("s3://"):
            raise RawInputError("the accounts and outcomes come from the CRM, not from Heap's S3 delivery: set "
                                "HEALTH_CRM_DIR to the folder that holds them")
        return Path(self.location)

    def prepare(self, log=None) -> dict:
        landed = land(Delivery(self.location), Landing(self.readable_dir), log)
        return {"source": self.kind, "location": redact(self.location), **landed}
