"""The landing folder: where a remote source's deliveries are written once, as the raw-input
contract's folder layout, for raw_activity to read like any local export.

A landing folder holds, besides the tables, `_landing.json`: each source table's bookmark (what it
has landed, such as the last dump id) and column types, and the stale days: days whose landed rows
changed since a run last extracted them. Landing a batch is all or nothing: files are written to
a hidden staging folder, checked, then moved into place, and the state is replaced last (written
aside and renamed). A landing killed half-way is done again by the next run, with the same file
names, so it leaves nothing twice.

Activity (events, sessions) lands as one parquet file per source table, delivery and UTC day
(`<table dir>/day=YYYY-MM-DD/<delivery>.parquet`), sorted by time so a day's run skips the other
row groups. Dimensions (users, merges) land as one file each, a later delivery's rows replacing
the earlier ones with the same key.
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
import pyarrow as pa

from health_pipeline.sql import SqlFolder

SQL = SqlFolder(__file__)
STATE = "_landing.json"
STAGING = ".staging"


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
    def batch(self):
        """A LandingBatch whose files and state take effect together when the block ends without
        an error; on an error nothing changes."""
        staging = self.root / STAGING / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            with duckdb.connect() as conn:
                conn.execute("SET TimeZone = 'UTC'")
                batch = LandingBatch(self, staging, conn)
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

    def add_activity(self, folder: str, rows: pa.Table, file_name: str, columns: dict[str, bool],
                     time_kind: str, table_name: str, events: bool) -> int:
        """Stage `rows` as one file per UTC day under `folder` (landed_activity.sql says how):
        `columns` maps each landed column to whether `rows` has it, `time_kind` says how its time
        is written, and events also carry `table_name` as their event_table_name."""
        (self.staging / folder).mkdir(parents=True, exist_ok=True)
        self.conn.register("delivered_rows", rows)
        try:
            SQL.run(self.conn, "landed_activity",
                    {"table_name": table_name, "target": str(self.staging / folder)},
                    columns=columns, time_kind=time_kind, file_name=file_name, with_event_table_name=events)
        finally:
            self.conn.unregister("delivered_rows")
        self.touched.add(folder)
        self.rows[table_name] = self.rows.get(table_name, 0) + rows.num_rows
        return rows.num_rows

    def merge_dimension(self, file_name: str, rows: pa.Table, key: str, version: int, replace: bool,
                        table_name: str) -> None:
        """Stage the dimension file `file_name` as the landed one with `rows` merged in: for each
        key, the rows of the latest version (a later delivery's rows replace the earlier ones);
        rows without a key are kept from the latest version only. `replace`: a full resync."""
        staged = self.staging / file_name
        current = staged if staged.exists() else self.landing.root / file_name
        earlier = [] if replace or not current.exists() else [str(current)]
        self.conn.register("delivered_rows", rows)
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
        or rows a resync drops."""
        days: set[str] = set()
        for folder in sorted(self.touched | self.replaced):
            before = _files(self.landing.root / folder)
            kept = [] if folder in self.replaced else before
            after = kept + _files(self.staging / folder)
            if not before and not after:
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


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*.parquet")) if folder.exists() else []
