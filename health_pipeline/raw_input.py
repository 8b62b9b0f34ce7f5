"""The raw-input contract: which tables a raw export holds, their columns, and how each is read.

A raw directory holds each table as `<name>.parquet`, `<name>.csv`, or a folder `<name>/` of
parquet files. `locate_table` finds a table, checks its structure and describes it as a
`RawTable`; the SQL that reads its rows is in the raw_activity asset's templates.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

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
# Optional columns a table is read with when present.
OPTIONAL_COLUMNS = {"users": ("role",)}

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

# The DuckDB readers, each taking the table's location as the parameter $location.
PARQUET_READER = "read_parquet($location, filename = true)"
PARQUET_FOLDER_READER = "read_parquet($location, filename = true, union_by_name = true)"
# The dialect is fixed (RFC 4180), not sniffed: odd values must not change how a file splits.
CSV_READER = ("read_csv($location, header = true, all_varchar = true, filename = true, "
              "delim = ',', quote = '\"', escape = '\"')")


class RawInputError(ValueError):
    """A raw table is structurally unusable: missing, unreadable, lacking a column, or a column
    of a type its values cannot be read as. The message names the table, the file and the column."""


@dataclass(frozen=True)
class RawTable:
    """One raw table as DuckDB should read it, with its columns' source types."""

    name: str
    location: str
    reader: str  # a DuckDB table function call over $location
    column_types: dict[str, str]

    @property
    def is_csv(self) -> bool:
        return self.reader.startswith("read_csv")

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the pipeline reads: the required ones, then the optional ones."""
        return (*RAW_TABLES[self.name], *OPTIONAL_COLUMNS.get(self.name, ()))

    def has(self, column: str) -> bool:
        return column in self.column_types

    def value_type(self, column: str) -> str:
        return VALUE_TYPES.get(column, "VARCHAR")

    def is_plain_timestamp(self, column: str) -> bool:
        """A TIMESTAMP without time zone: usable as is, and DuckDB can prune row groups by it."""
        dtype = self.column_types[column]
        return dtype.startswith("TIMESTAMP") and "TIME ZONE" not in dtype

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
    for (file,) in conn.execute("SELECT file FROM glob($location) ORDER BY file", {"location": location}).fetchall():
        try:
            described = conn.execute("DESCRIBE SELECT * FROM read_parquet($file)", {"file": file}).fetchall()
        except duckdb.Error as exc:
            raise RawInputError(f"raw table '{name}' ({file}) cannot be read: {exc}") from exc
        check_columns(name, file, {col.lower(): dtype for col, dtype, *_ in described})


def _find(raw_dir: Path, name: str) -> tuple[Path, str] | None:
    """Where table `name` is in `raw_dir`, and the reader for it; None if it is absent."""
    for path, reader in (
        (raw_dir / f"{name}.parquet", PARQUET_READER),
        (raw_dir / f"{name}.csv", CSV_READER),
        (raw_dir / name, PARQUET_FOLDER_READER),
    ):
        if path.is_file() or (path.is_dir() and any(path.rglob("*.parquet"))):
            return path, reader
    return None


def _check_folder_files(conn: duckdb.DuckDBPyConnection, name: str, location: str) -> None:
    """union_by_name fills a column one file lacks with NULLs: check each file has them all."""
    per_file = conn.execute(
        "SELECT file_name, list(lower(name)) FROM parquet_schema($location) GROUP BY file_name "
        "ORDER BY file_name", {"location": location}
    ).fetchall()
    for file, columns in per_file:
        if missing := [c for c in RAW_TABLES[name] if c not in columns]:
            raise RawInputError(f"raw table '{name}' ({file}) lacks required column(s) {', '.join(missing)}; "
                                f"it has {', '.join(sorted(set(columns) - {'schema'}))}")


def locate_table(conn: duckdb.DuckDBPyConnection, raw_dir: Path, name: str) -> RawTable | None:
    """Locate and describe raw table `name`; None for an absent optional table."""
    found = _find(raw_dir, name)
    if found is None:
        if name in OPTIONAL_TABLES:
            return None
        raise RawInputError(
            f"raw table '{name}' not found in {raw_dir}: expected {name}.parquet, {name}.csv "
            f"or a folder {name}/ of parquet files"
        )
    path, reader = found
    location = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
    try:
        described = conn.execute(f"DESCRIBE SELECT * FROM {reader}", {"location": location}).fetchall()
        if path.is_dir():
            _check_folder_files(conn, name, location)
    except duckdb.Error as exc:
        if path.is_dir():
            check_each_file(conn, name, location)
        raise RawInputError(f"raw table '{name}' ({location}) cannot be read: {exc}") from exc
    types = {col.lower(): dtype for col, dtype, *_ in described}
    try:
        check_columns(name, location, types)
    except RawInputError:
        if path.is_dir():
            check_each_file(conn, name, location)
        raise
    return RawTable(name, location, reader, types)
