"""Where the pipeline reads raw exports from and writes sync files to, and how each is configured.

Every setting comes from an environment variable through `dg.EnvVar` when it is set, so the
Dagster UI shows where a value came from, and falls back to a path under the project's `data/`
folder otherwise, which is the embedded default that needs no set-up.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb

from health_pipeline import DATA_DIR
from health_pipeline.warehouse import Warehouse

# table -> required columns (extra columns in a file are ignored)
RAW_TABLES: dict[str, tuple[str, ...]] = {
    "users": ("user_id", "identity", "joindate", "account_id"),
    "accounts": (
        "account_id", "name", "owner", "plan", "arr", "vertical", "customer_since", "status",
    ),
    "sessions": ("session_id", "user_id", "time"),
    "all_events": ("event_id", "user_id", "session_id", "time", "event_table_name"),
    "user_migrations": ("from_user_id", "to_user_id", "time"),
}
OPTIONAL_TABLES = {"user_migrations"}

# column -> what its values are read as; every other column is read as text.
VALUE_TYPES = {"time": "TIMESTAMPTZ", "joindate": "DATE", "customer_since": "DATE", "arr": "DOUBLE"}
# The source types a column can be read from. A file whose column has another type (a BOOLEAN
# time, an epoch BIGINT time, a LIST arr) is structurally wrong: no row of it can be read.
_INTEGER = r"(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|U?HUGEINT|UBIGINT)"
# An all-null column has type "NULL" and is readable as anything. Floating-point ids are not
# readable as ids: 1000001.0 would never match 1000001.
READABLE_AS = {
    "TIMESTAMPTZ": re.compile(r'^(TIMESTAMP.*|DATE|VARCHAR|"NULL")$'),
    "DATE": re.compile(r'^(TIMESTAMP.*|DATE|VARCHAR|"NULL")$'),
    "DOUBLE": re.compile(rf'^({_INTEGER}|FLOAT|DOUBLE|DECIMAL.*|VARCHAR|"NULL")$'),
    "VARCHAR": re.compile(rf'^({_INTEGER}|VARCHAR|UUID|"NULL")$'),
}


class RawInputError(ValueError):
    """A raw table is structurally unusable: missing, unreadable, lacking a column, or a column
    of a type its values cannot be read as. The message names the table, the file and the column."""


@dataclass(frozen=True)
class RawTable:
    """One raw table as DuckDB should read it, with its columns' source types."""

    name: str
    location: str
    reader: str  # a DuckDB table function call taking the location as its only parameter
    column_types: dict[str, str]

    @property
    def rows(self) -> str:
        """A relation of the table's rows plus source_file and source_row (1-based, in its file)."""
        if self.reader.startswith("read_csv"):
            return (f"(SELECT * EXCLUDE (filename, ordinality), filename AS source_file, "
                    f"ordinality AS source_row FROM {self.reader} WITH ORDINALITY)")
        return (f"(SELECT * EXCLUDE (filename), filename AS source_file, "
                f"file_row_number + 1 AS source_row FROM {self.reader})")

    def value(self, name: str, cast: str = "VARCHAR") -> str:
        """SQL for `name` read as `cast`: NULL when unreadable, or when an optional column is absent."""
        if name not in self.column_types:
            return f"CAST(NULL AS {cast})"
        return f"TRY_CAST({name} AS {cast})"

    def column(self, name: str, cast: str = "VARCHAR") -> str:
        return f"{self.value(name, cast)} AS {name}"

    def unreadable(self, name: str) -> str:
        """SQL that is true when `name` holds a value that cannot be read as its VALUE_TYPES type."""
        return f"({name} IS NOT NULL AND {self.value(name, VALUE_TYPES[name])} IS NULL)"

    def utc_time(self, name: str) -> str:
        """SQL for a time column as a UTC TIMESTAMP, NULL when unparseable.

        Naive values are already UTC; values with an offset are converted (the session runs in
        UTC). A TIMESTAMP column is used as is, so DuckDB can skip parquet row groups by time.
        """
        if self.column_types[name].startswith("TIMESTAMP") and "TIME ZONE" not in self.column_types[name]:
            return f"CAST({name} AS TIMESTAMP)"
        return f"CAST(TRY_CAST({name} AS TIMESTAMPTZ) AS TIMESTAMP)"

    def may_be_between(self, name: str) -> str:
        """SQL for a loose test that `name` lies in [?, ?) (two parameters: start, end), made on the
        raw column so that DuckDB skips parquet row groups by their time statistics, which it does
        not do for utc_time's cast through the `rows` subquery. Rows it keeps still need the exact
        test on utc_time. TRUE for a column with no usable statistics (text, or with a time zone)."""
        if self.column_types[name].startswith("TIMESTAMP") and "TIME ZONE" not in self.column_types[name]:
            return f"{name} BETWEEN CAST(? AS TIMESTAMP) - INTERVAL 1 SECOND AND CAST(? AS TIMESTAMP) + INTERVAL 1 SECOND"
        return "(CAST(? AS TIMESTAMP) IS NOT NULL OR CAST(? AS TIMESTAMP) IS NULL)"

    def row_json(self, columns: tuple[str, ...]) -> str:
        """SQL for `columns` of a raw row as a JSON object of their values as text."""
        return "to_json(struct_pack(" + ", ".join(f"{c} := {self.value(c)}" for c in columns) + "))"

    @contextmanager
    def reading(self, conn: duckdb.DuckDBPyConnection):
        """Report a failure to read this table's files as a RawInputError naming the table and file."""
        try:
            yield
        except duckdb.Error as exc:
            if self.location.endswith("*.parquet"):
                check_each_file(conn, self.name, self.location)
            raise RawInputError(f"raw table '{self.name}' ({self.location}) cannot be read: {exc}") from exc


def check_columns(name: str, file: str, types: dict[str, str]) -> None:
    """Raise a RawInputError if a file of raw table `name` lacks a required column or has one of a
    type its values cannot be read as. `types` maps the file's lower-cased columns to DuckDB types."""
    missing = [c for c in RAW_TABLES[name] if c not in types]
    if missing:
        raise RawInputError(
            f"raw table '{name}' ({file}) lacks required column(s) {', '.join(missing)}; "
            f"it has {', '.join(sorted(set(types) - {'filename'}))}"
        )
    for column in RAW_TABLES[name]:
        target = VALUE_TYPES.get(column, "VARCHAR")
        if not READABLE_AS[target].match(types[column]):
            raise RawInputError(
                f"raw table '{name}' ({file}) column '{column}' has type {types[column]}, "
                f"which cannot be read as {target}"
            )


def check_each_file(conn: duckdb.DuckDBPyConnection, name: str, location: str) -> None:
    """Check every parquet file of a folder on its own, to name the one that breaks the whole."""
    for (file,) in conn.execute("SELECT file FROM glob(?) ORDER BY file", [location]).fetchall():
        try:
            described = conn.execute("DESCRIBE SELECT * FROM read_parquet(?)", [file]).fetchall()
        except duckdb.Error as exc:
            raise RawInputError(f"raw table '{name}' ({file}) cannot be read: {exc}") from exc
        check_columns(name, file, {col.lower(): dtype for col, dtype, *_ in described})


class RawSource(dg.ConfigurableResource):
    """A directory of raw exports in Heap Connect layout.

    Each table is `<name>.parquet`, `<name>.csv`, or a folder `<name>/` of parquet files.
    """

    raw_dir: str
    # Rows stamped later than this past the run's clock are quarantined as future_time.
    future_tolerance_hours: int = 24

    def table(self, conn: duckdb.DuckDBPyConnection, name: str) -> RawTable | None:
        """Locate and describe a raw table; None for an absent optional table."""
        base = Path(self.raw_dir)
        candidates = [
            (base / f"{name}.parquet", "read_parquet(?, filename = true)"),
            # The dialect is fixed (RFC 4180), not sniffed: odd values must not change how a file splits.
            (base / f"{name}.csv", "read_csv(?, header = true, all_varchar = true, filename = true, "
                                   "delim = ',', quote = '\"', escape = '\"')"),
            (base / name, "read_parquet(?, filename = true, union_by_name = true)"),
        ]
        for path, reader in candidates:
            if path.is_file() or (path.is_dir() and any(path.rglob("*.parquet"))):
                location = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
                break
        else:
            if name in OPTIONAL_TABLES:
                return None
            raise RawInputError(
                f"raw table '{name}' not found in {base}: expected {name}.parquet, {name}.csv "
                f"or a folder {name}/ of parquet files"
            )
        try:
            described = conn.execute(f"DESCRIBE SELECT * FROM {reader}", [location]).fetchall()
            if path.is_dir():
                # union_by_name fills a column one file lacks with NULLs: check each file has them all.
                per_file = conn.execute(
                    "SELECT file_name, list(lower(name)) FROM parquet_schema(?) GROUP BY file_name "
                    "ORDER BY file_name", [location]
                ).fetchall()
            else:
                per_file = []
        except duckdb.Error as exc:
            if path.is_dir():
                check_each_file(conn, name, location)
            raise RawInputError(f"raw table '{name}' ({location}) cannot be read: {exc}") from exc
        for file, columns in per_file:
            if missing := [c for c in RAW_TABLES[name] if c not in columns]:
                raise RawInputError(f"raw table '{name}' ({file}) lacks required column(s) {', '.join(missing)}; "
                                    f"it has {', '.join(sorted(set(columns) - {'schema'}))}")
        types = {col.lower(): dtype for col, dtype, *_ in described}
        try:
            check_columns(name, location, types)
        except RawInputError:
            if path.is_dir():
                check_each_file(conn, name, location)
            raise
        return RawTable(name, location, reader, types)


class ExportTarget(dg.ConfigurableResource):
    """The folder that receives the sync files CS tools import."""

    export_dir: str


PATH_DEFAULTS = {
    "HEALTH_WAREHOUSE": DATA_DIR / "warehouse.duckdb",
    "HEALTH_RAW_DIR": DATA_DIR / "raw",
    "HEALTH_EXPORT_DIR": DATA_DIR / "exports",
}


def setting_path(env_var: str) -> Path:
    """The path a setting resolves to now: the environment variable, else its default."""
    return Path(os.environ.get(env_var) or PATH_DEFAULTS[env_var])


def _setting(env_var: str) -> str | dg.EnvVar:
    return dg.EnvVar(env_var) if os.environ.get(env_var) else str(PATH_DEFAULTS[env_var])


def duckdb_limits() -> dict:
    """DuckDB's memory limit and threads, from HEALTH_DUCKDB_MEMORY_LIMIT and HEALTH_DUCKDB_THREADS if set."""
    limits = {}
    if os.environ.get("HEALTH_DUCKDB_MEMORY_LIMIT"):
        limits["memory_limit"] = dg.EnvVar("HEALTH_DUCKDB_MEMORY_LIMIT")
    if os.environ.get("HEALTH_DUCKDB_THREADS"):
        limits["threads"] = dg.EnvVar.int("HEALTH_DUCKDB_THREADS")
    return limits


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """The embedded default: sample data, a local DuckDB file and local exports."""
    tolerance = (
        {"future_tolerance_hours": dg.EnvVar.int("HEALTH_FUTURE_TOLERANCE_HOURS")}
        if os.environ.get("HEALTH_FUTURE_TOLERANCE_HOURS") else {}
    )
    return {
        "warehouse": Warehouse(database=_setting("HEALTH_WAREHOUSE"), **duckdb_limits()),
        "raw_source": RawSource(raw_dir=_setting("HEALTH_RAW_DIR"), **tolerance),
        "export_target": ExportTarget(export_dir=_setting("HEALTH_EXPORT_DIR")),
    }
