"""Where the pipeline reads raw exports from and writes sync files to, and how each is configured.

Every setting comes from an environment variable through `dg.EnvVar` when it is set, so the
Dagster UI shows where a value came from, and falls back to a path under the project's `data/`
folder otherwise, which is the embedded default that needs no set-up.
"""

from __future__ import annotations

import os
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


class RawInputError(ValueError):
    """A raw table is structurally unusable: missing, unreadable, or missing a column."""


@dataclass(frozen=True)
class RawTable:
    """One raw table as DuckDB should read it, with its columns' source types."""

    name: str
    location: str
    reader: str  # a DuckDB table function call taking the location as its only parameter
    column_types: dict[str, str]

    def column(self, name: str, cast: str) -> str:
        """SQL reading `name` as `cast`; NULL when an optional column is absent."""
        if name not in self.column_types:
            return f"CAST(NULL AS {cast}) AS {name}"
        return f"CAST({name} AS {cast}) AS {name}"

    def utc_time(self, name: str) -> str:
        """SQL for a time column as a UTC TIMESTAMP, NULL when unparseable.

        Naive values are already UTC; values with an offset are converted (the session runs in
        UTC). A TIMESTAMP column is used as is, so DuckDB can skip parquet row groups by time.
        """
        if self.column_types[name].startswith("TIMESTAMP") and "TIME ZONE" not in self.column_types[name]:
            return f"CAST({name} AS TIMESTAMP)"
        return f"CAST(TRY_CAST({name} AS TIMESTAMPTZ) AS TIMESTAMP)"


class RawSource(dg.ConfigurableResource):
    """A directory of raw exports in Heap Connect layout.

    Each table is `<name>.parquet`, `<name>.csv`, or a folder `<name>/` of parquet files.
    """

    raw_dir: str

    def table(self, conn: duckdb.DuckDBPyConnection, name: str) -> RawTable | None:
        """Locate and describe a raw table; None for an absent optional table."""
        base = Path(self.raw_dir)
        candidates = [
            (base / f"{name}.parquet", "read_parquet(?, filename = true)"),
            (base / f"{name}.csv", "read_csv(?, header = true, all_varchar = true, filename = true)"),
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
        except duckdb.Error as exc:
            raise RawInputError(f"raw table '{name}' ({location}) cannot be read: {exc}") from exc
        types = {col.lower(): dtype for col, dtype, *_ in described}
        missing = [c for c in RAW_TABLES[name] if c not in types]
        if missing:
            raise RawInputError(
                f"raw table '{name}' ({location}) lacks required column(s) {', '.join(missing)}; "
                f"it has {', '.join(sorted(types))}"
            )
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
    return {
        "warehouse": Warehouse(database=_setting("HEALTH_WAREHOUSE"), **duckdb_limits()),
        "raw_source": RawSource(raw_dir=_setting("HEALTH_RAW_DIR")),
        "export_target": ExportTarget(export_dir=_setting("HEALTH_EXPORT_DIR")),
    }
