"""The Dagster resources: the DuckDB warehouse, the raw source it reads, the folder it exports to,
the PostgreSQL it syncs to, and the engine of the event stage (health_pipeline.engines).

`default_resources` is the embedded default that needs no set-up: sample data, a DuckDB file
and local exports under `data/`, each overridable through its environment variable
(health_pipeline.settings).
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from health_pipeline import settings
from health_pipeline.engines import EventEngine
from health_pipeline.progress import report_progress
from health_pipeline.recovery import record_process
from health_pipeline.redaction import redact
from health_pipeline.sources import FolderSource, HeapS3Source, RawSource, WarehouseSource, source_kind

SCHEMAS = ("raw", "core", "export")
# A second writer gets "Could not set lock on file": retry with exponential backoff (0.1 s,
# doubling), about 100 s in all, so a queued run waits instead of failing at once. Any other
# failure to open the file (permissions, a missing folder) fails at once.
LOCK_RETRIES = 10
FIRST_RETRY_SECONDS = 0.1


class WarehouseError(RuntimeError):
    """The warehouse cannot be opened, or ran out of memory: the message says which setting to change."""


class Warehouse(DuckDBResource):
    """The DuckDB file every asset reads and writes. Sessions run in UTC.

    `memory_limit` and `threads` bound what one run may use (DuckDB spills larger work to
    disk next to the database); `connection_config` takes any other DuckDB setting.
    """

    # DuckDB lets one process hold the file (one writer, or readers only), so every step
    # that opens it runs in this Dagster concurrency pool; dagster.yaml gives it one slot.
    POOL: ClassVar[str] = "warehouse"

    memory_limit: str | None = Field(
        default=None, description="DuckDB memory_limit, such as '2GB'. Unset: DuckDB's default, 80% of RAM."
    )
    threads: int | None = Field(default=None, description="DuckDB threads. Unset: one per core.")

    @property
    def duckdb_settings(self) -> dict:
        limits = {"memory_limit": self.memory_limit, "threads": self.threads}
        return {**self.connection_config, **{k: v for k, v in limits.items() if v}}

    def _connect(self, read_only: bool, create: bool) -> duckdb.DuckDBPyConnection:
        if problem := settings.warehouse_problem(self.database):
            raise WarehouseError(problem)
        if self.database != ":memory:" and not Path(self.database).exists():
            if not create:
                raise WarehouseError(
                    f"the warehouse {self.database} is gone (deleted or moved since raw_activity built it, or "
                    "never built): restore it, or run again from raw_activity, which builds it; nothing was "
                    "created in its place")
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        config = {"custom_user_agent": "health_pipeline", **self.duckdb_settings}
        for attempt in range(LOCK_RETRIES + 1):
            try:
                return duckdb.connect(self.database, read_only=read_only, config=config)
            except duckdb.IOException as exc:
                who = self._lock_holder_named_by(exc)
                if attempt == LOCK_RETRIES:
                    raise WarehouseError(
                        f"the warehouse {self.database} is in use by {who}, and stayed locked for "
                        f"{FIRST_RETRY_SECONDS * (2**LOCK_RETRIES - 1):.0f} s: let that process finish, or stop "
                        "it, then run again") from exc
                report_progress(f"waiting for the warehouse, which {who} holds")
                time.sleep(FIRST_RETRY_SECONDS * 2**attempt)
        raise AssertionError("unreachable")

    def _lock_holder_named_by(self, exc: duckdb.IOException) -> str:
        """The process DuckDB's "Could not set lock on file" names; any other failure to open the
        file (permissions, a missing folder) is raised as a WarehouseError."""
        if "lock" not in str(exc).lower():
            raise WarehouseError(f"HEALTH_WAREHOUSE={self.database!r} cannot be opened: "
                                 f"{str(exc).splitlines()[0]}") from exc
        holder = re.search(r"lock is held in (.*?) \(PID (\d+)\)", str(exc))
        return f"process {holder[2]} ({holder[1]})" if holder else "another process"

    def lock_holder(self) -> str | None:
        """The process that has the warehouse file open for writing, or None when no process has.

        A read-only open, closed at once: it writes nothing, and a writer opening in that instant
        only retries (`_connect`). DuckDB grants the file's lock to one writing process, which
        holds it from its connection's open to its close."""
        if self.database == ":memory:" or not Path(self.database).exists():
            return None
        try:
            duckdb.connect(self.database, read_only=True).close()
        except duckdb.IOException as exc:
            return self._lock_holder_named_by(exc)
        return None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every run that uses the warehouse, whoever launched it (dg launch, dagster asset
        # materialize, the daemon), records the machine and process it runs in before its first
        # step claims a warehouse pool slot, so that a later run can tell whether it died (recovery.py).
        if context.instance is not None and context.run is not None:
            record_process(context.instance, context.run)

    @contextmanager
    def get_connection(self, read_only: bool = False, create: bool = False):
        """A connection to the warehouse. Only `create` (raw_activity, the stage that builds the
        warehouse) may make a new file: for any other step DuckDB would make an empty one, and a
        warehouse deleted during a run would fail the next step on a missing table instead of by name."""
        conn = self._connect(read_only, create)
        try:
            # ICU is loaded only after connect, so this cannot go in the connect config.
            conn.execute("SET TimeZone = 'UTC'")
            if not read_only:
                for schema in SCHEMAS:
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            yield conn
        except duckdb.OutOfMemoryException as exc:
            limit = self.memory_limit or "DuckDB's default, 80% of RAM"
            raise WarehouseError(
                f"DuckDB ran out of memory (memory limit {limit}): raise HEALTH_DUCKDB_MEMORY_LIMIT, "
                f"or run fewer days at a time. {str(exc).splitlines()[0]}"
            ) from exc
        finally:
            conn.close()


class ExportTarget(dg.ConfigurableResource):
    """The folder that receives the sync files CS tools import."""

    export_dir: str


class PostgresTarget(dg.ConfigurableResource):
    """The PostgreSQL database CS tools read the sync tables from (HEALTH_SYNC_POSTGRES_URL).

    Empty `url`: no sync is configured, and postgres_sync skips. The URL carries the password, so
    it comes from the environment, never from a file.
    """

    url: str = Field(default="", description="postgresql://user:password@host:port/database, or empty: no sync.")
    schema_name: str = Field(default="health", description="The PostgreSQL schema of the synced tables.")
    connect_timeout_seconds: int = Field(default=10, description="How long to wait for the server.")
    lock_timeout_seconds: int = Field(
        default=10, description="How long the sync waits for a lock on a synced table or view (held by another "
                                "session's open transaction) before it fails, naming that session.")

    @property
    def configured(self) -> bool:
        return bool(self.url)

    def connect(self):
        """A psycopg connection; a URL libpq cannot read, a server that is down or refuses the login
        fail with one line naming HEALTH_SYNC_POSTGRES_URL, the address and the server's reason,
        never the password (libpq's messages can quote the whole URL: they are redacted)."""
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        if problem := settings.postgres_url_problem(self.url):
            raise PostgresUnavailable(problem)
        try:
            info = conninfo_to_dict(self.url)
        except psycopg.ProgrammingError as exc:
            raise PostgresUnavailable(redact(f"HEALTH_SYNC_POSTGRES_URL cannot be read: {exc}")) from None
        where = f"{info.get('user', '?')}@{info.get('host', 'localhost')}:{info.get('port', 5432)}/" \
                f"{info.get('dbname', '?')}"
        try:
            return psycopg.connect(self.url, connect_timeout=self.connect_timeout_seconds, autocommit=False)
        except psycopg.OperationalError as exc:
            # libpq: "connection to server at … failed: <reason>", then any hint on lines of its own.
            first, *hints = (line.strip() for line in str(exc).strip().splitlines())
            reason = first.rsplit("failed:", 1)[-1].split("FATAL:", 1)[-1].strip()
            hint = f" ({' '.join(hints)})" if hints else ""
            raise PostgresUnavailable(redact(f"cannot connect to PostgreSQL as {where} (HEALTH_SYNC_POSTGRES_URL): "
                                             f"{reason}{hint}")) from None


class PostgresUnavailable(RuntimeError):
    """The sync's PostgreSQL URL is unusable, or its server is down, unreachable or refuses the login."""


class PostgresSyncBlocked(RuntimeError):
    """The sync cannot change a table or view in PostgreSQL: another session held a lock on it past
    the lock timeout, or a view's new definition cannot replace the old one in place. The message
    names the object and what to do; the sync's transaction rolled back."""


def raw_source(for_dagster: bool = True) -> RawSource:
    """The raw source HEALTH_SOURCE chooses (else the shape of HEALTH_RAW_DIR), with its settings
    (HEALTH_CRM_MAPPING among them, whichever the source): as EnvVars for Dagster (the UI names
    them), or as plain values for the CLI."""
    def setting(env_var: str) -> str | dg.EnvVar:
        return settings.path_config(env_var) if for_dagster else str(settings.path(env_var))

    options = settings.raw_source_options() if for_dagster else settings.raw_source_values()
    kind = source_kind(str(settings.path("HEALTH_RAW_DIR")), settings.source())
    crm = {"crm_dir": setting("HEALTH_CRM_DIR")} if settings.is_set("HEALTH_CRM_DIR") else {}
    if kind == "heap_s3":
        return HeapS3Source(location=setting("HEALTH_RAW_DIR"), landing_dir=setting("HEALTH_LANDING_DIR"),
                            **crm, **options)
    if kind == "warehouse":
        return WarehouseSource(url=settings.source_url(for_dagster), schema_name=settings.source_schema(),
                               landing_dir=setting("HEALTH_LANDING_DIR"), **crm, **options)
    return FolderSource(raw_dir=setting("HEALTH_RAW_DIR"), **options)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """The embedded default: sample data, a local DuckDB file and local exports."""
    return {
        "warehouse": Warehouse(database=settings.path_config("HEALTH_WAREHOUSE"), **settings.duckdb_limits()),
        "raw_source": raw_source(),
        "export_target": ExportTarget(export_dir=settings.path_config("HEALTH_EXPORT_DIR")),
        "postgres": PostgresTarget(**settings.postgres_options()),
        "engine": EventEngine(**settings.engine_options()),
    }
