"""The landing folder: where a remote source's deliveries are written once, as the raw-input
contract's folder layout, for raw_activity to read like any local export.

A landing folder holds, besides the tables, `_landing.json`: the kind of source that lands there
(one kind per folder), each source table's bookmark (what it has landed: the last dump id, or each
day's digest) and column types, and the stale days: days whose landed rows changed since a run
last extracted them. Landing a batch is all or nothing: files are written to a hidden staging
folder, checked, then moved into place, and the state is replaced last (written aside and
renamed). A landing killed half-way is done again by the next run, with the same file names, so
it leaves nothing twice.

Activity (events, sessions) lands as one parquet file per source table, delivery and UTC day
(`<table dir>/day=YYYY-MM-DD/<delivery>.parquet`), sorted by time so a day's run skips the other
row groups; a source that extracts whole days replaces a day's files when it lands it again
(`replace_days`). Dimensions (users, merges) land as one file each, a later delivery's rows
replacing the earlier ones with the same key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from health_pipeline.raw_input import CRM_TABLES, RawInputError, RawTable, locate_table
from health_pipeline.sources.base import RawSource
from health_pipeline.sql import SqlFolder

SQL = SqlFolder(__file__)
STATE = "_landing.json"
STAGING = ".staging"


class LandedSource(RawSource):
    """A remote source landed under `landing_dir`, which raw_activity reads; the CRM's tables
    (raw_input.CRM_TABLES) from `crm_dir` when it is set."""

    landing_dir: str
    crm_dir: str = ""

    @property
    def readable_dir(self) -> Path:
        return Path(self.landing_dir)

    @property
    def crm_folder(self) -> Path:
        """Where the CRM's tables are read: `crm_dir`, else the landing."""
        return Path(self.crm_dir) if self.crm_dir else self.readable_dir

    def table(self, conn: duckdb.DuckDBPyConnection, name: str) -> RawTable | None:
        return locate_table(conn, self.crm_folder if name in CRM_TABLES else self.readable_dir, name,
                            self.crm_table(name))

    def stale_days(self) -> list[dt.date]:
        return Landing(self.readable_dir).stale_days()

    def forget_stale_days(self, first_day: dt.date, last_day: dt.date) -> None:
        Landing(self.readable_dir).forget_stale_days(first_day, last_day)


class Landing:
    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def state(self) -> dict:
        path = self.root / STATE
        return json.loads(path.read_text()) if path.exists() else {"tables": {}, "stale_days": []}

    def _write_state(self, state: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        aside = self.root / f".{STATE}.{uuid.uuid4().hex}"
        aside.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(aside, self.root / STATE)

    def stale_days(self) -> list[dt.date]:
        return [dt.date.fromisoformat(day) for day in self.state["stale_days"]]

    def forget_stale_days(self, first_day: dt.date, last_day: dt.date) -> None:
        """A run extracted [first_day, last_day] again: those days are no longer stale."""
        state = self.state
        kept = [day for day in state["stale_days"] if not first_day <= dt.date.fromisoformat(day) <= last_day]
        if kept != state["stale_days"]:
            self._write_state({**state, "stale_days": kept})

    @contextmanager
    def batch(self, source: str):
        """A LandingBatch of the `source` kind, whose files and state take effect together when the
        block ends without an error; on an error nothing changes. A landing folder holds one kind
        of source's deliveries: their layouts differ, and raw_activity would read both."""
        landed_by = self.state.get("source", source)
        if landed_by != source:
            raise RawInputError(f"the landing folder {self.root} holds what a {landed_by} source landed, not a "
                                f"{source} source: give each source its own HEALTH_LANDING_DIR")
        staging = self.root / STAGING / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            with duckdb.connect() as conn:
                conn.execute("SET TimeZone = 'UTC'")
                batch = LandingBatch(self, staging, conn)
                batch.state["source"] = source
                yield batch
                batch.commit()
        finally:
            shutil.rmtree(staging, ignore_errors=True)


class LandingBatch:
    def __init__(self, landing: Landing, staging: Path, conn: duckdb.DuckDBPyConnection):
        self.landing, self.staging, self.conn = landing, staging, conn
        self.state = landing.state
        self.replaced: set[str] = set()  # activity folders whose earlier files a full resync drops
        self.touched: set[str] = set()  # activity folders this batch adds files to
        self.rows: dict[str, int] = {}

    def replace(self, folder: str) -> None:
        """A full resync of the table landing in `folder`: its earlier files go at commit, and files
        staged for it earlier in this batch go now."""
        self.replaced.add(folder)
        shutil.rmtree(self.staging / folder, ignore_errors=True)

    def replace_days(self, folder: str, first_day: dt.date, last_day: dt.date) -> None:
        """The days [first_day, last_day] of the activity in `folder` are landed anew by this batch:
        their earlier files go at commit."""
        day = first_day
        while day <= last_day:
            self.replace(f"{folder}/day={day}")
            day += dt.timedelta(days=1)

    def add_activity(self, folder: str, rows: pa.Table | pa.RecordBatchReader, file_name: str,
                     columns: dict[str, bool], time_kind: str, table_name: str, events: bool) -> int:
        """Stage `rows` (a table, or a stream of record batches read once) as one file per UTC day
        under `folder` (landed_activity.sql says how): `columns` maps each landed column to whether
        `rows` has it, `time_kind` says how its time is written, and the events of one event table
        (`events`) also carry `table_name` as their event_table_name. Returns the rows staged."""
        (self.staging / folder).mkdir(parents=True, exist_ok=True)
        self.conn.register("delivered_rows", rows)
        try:
            params = {"target": str(self.staging / folder), **({"table_name": table_name} if events else {})}
            (staged,) = SQL.run(self.conn, "landed_activity", params, columns=columns, time_kind=time_kind,
                                file_name=file_name, with_event_table_name=events).fetchone()
        finally:
            self.conn.unregister("delivered_rows")
        # The day folders written: changed_days compares each with the same day as landed.
        self.touched |= {f"{folder}/{day.name}" for day in (self.staging / folder).iterdir() if day.is_dir()}
        self.rows[table_name] = self.rows.get(table_name, 0) + staged
        return staged

    def merge_dimension(self, file_name: str, rows: pa.Table, key: str, version: int, replace: bool,
                        table_name: str) -> None:
        """Stage the dimension file `file_name` as the landed one with `rows` merged in: for each
        key, the rows of the latest version (a later delivery's rows replace the earlier ones);
        rows without a key are kept from the latest version only. `replace`: a full resync."""
        staged = self.staging / file_name
        current = staged if staged.exists() else self.landing.root / file_name
        earlier = [] if replace or not current.exists() else [str(current)]
        self.conn.register("delivered_rows", rows.append_column("landed_row", pa.array(np.arange(rows.num_rows))))
        try:
            merged = SQL.render("merged_dimension", key=key, earlier=bool(earlier))
            params = {"version": version, "target": f"{staged}.tmp", **({"earlier": earlier} if earlier else {})}
            self.conn.execute(f"COPY ({merged}) TO $target (FORMAT parquet)", params)
        finally:
            self.conn.unregister("delivered_rows")
        os.replace(f"{staged}.tmp", staged)
        self.rows[table_name] = self.rows.get(table_name, 0) + rows.num_rows

    def changed_days(self) -> list[str]:
        """The UTC days whose landed activity this batch changes: rows added that were not there,
        or rows a replaced folder drops. Each day folder written is compared with the same day as
        landed (a row's day is its time's, so an identical row is in the same folder), and each
        replaced folder as a whole: a batch reads only the landed days it touches."""
        days: set[str] = set()
        in_replaced = {f for f in self.touched if any(f.startswith(f"{r}/") for r in self.replaced)}
        for folder in sorted((self.touched - in_replaced) | self.replaced):
            before = _files(self.landing.root / folder)
            kept = [] if folder in self.replaced else before
            after = kept + _files(self.staging / folder)
            if not before and not after:
                continue
            day = Path(folder).name.removeprefix("day=")
            if not before and day != Path(folder).name and day != "NULL":
                days.add(day)  # a day landed for the first time: its folder says which, no need to read it
                continue
            files = {"before": before, "after": after}
            days |= {str(day) for (day,) in SQL.run(
                self.conn, "changed_days", {name: f for name, f in files.items() if f},
                any_before=bool(before), any_after=bool(after)).fetchall()}
        return sorted(days)

    def commit(self) -> None:
        self.days_changed = self.changed_days()
        stale = sorted(set(self.state.get("stale_days", [])) | set(self.days_changed))
        for folder in self.replaced:
            shutil.rmtree(self.landing.root / folder, ignore_errors=True)
        for path in sorted(p for p in self.staging.rglob("*") if p.is_file()):
            target = self.landing.root / path.relative_to(self.staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        self.landing._write_state({**self.state, "stale_days": stale})


def time_kind(schema: pa.Schema) -> str:
    """How a delivery wrote its time column (landed_activity.sql lands each kind as UTC)."""
    if "time" not in schema.names:
        return "text"
    dtype = schema.field("time").type
    if pa.types.is_timestamp(dtype):
        return "timestamptz" if dtype.tz else "timestamp"
    if pa.types.is_integer(dtype):
        return "epoch"
    return "text"


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*.parquet")) if folder.exists() else []
