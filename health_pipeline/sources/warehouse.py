"""Heap Connect's warehouse delivery: the tables Heap keeps up to date in Snowflake, BigQuery or
Redshift (or any PostgreSQL), read through ADBC as Arrow and landed incrementally as the
contract's folder layout (landing.Landing), which raw_activity reads like any local export.

What Heap keeps there, in one schema (HEALTH_SOURCE_SCHEMA, a BigQuery dataset): `all_events`
(event_id, user_id, session_id, time, event_table_name: every event), `sessions`, `users`,
`user_migrations`, `pageviews` and one table per defined event, refreshed by each sync. The
source reads all_events, sessions, users and user_migrations; the CRM's accounts and outcomes
(and the optional signal tables csm_pulse, tickets, nps_responses and invoices, when the schema
has them) from the same schema, or from the CRM folder (`crm_dir`, HEALTH_CRM_DIR) when one is set.

How it is read, each time `prepare` runs:
- Activity (all_events, sessions) is extracted by UTC day. One GROUP BY query per table
  (warehouse_day_digests.sql) gives every day's digest in the warehouse: its rows and a sum of a
  hash of each row. A day is extracted when its digest differs from the one recorded when it was
  last landed: a day not landed yet, a day Heap re-synced (a full resync of an event definition,
  late or corrected rows), a day that lost rows. Each run of consecutive such days is one
  pushed-down query (`time >= $start AND time < $end`, warehouse_rows.sql) whose record batches
  stream into the landing, replacing those days' files; rows without a time are one more "day".
  The landing records the days whose rows changed as stale until a run extracts them.
- The digests are taken before the rows, so a sync that lands in between makes the next run
  extract the day again, never miss it.
- users, user_migrations (and the CRM's tables, from the warehouse) are read whole every run.
- Everything a run reads lands together or not at all (landing.Landing.batch).
- The SQL is written once, in DuckDB's dialect, and written for each warehouse by sqlglot, with
  every identifier quoted as the warehouse spells it (found through ADBC's catalog calls, so
  Snowflake's upper-case names match) and every value a bound parameter.

Times are read as UTC: a timestamp without a zone is taken as UTC, as Heap writes it, and the
session runs in UTC so that a timestamp with one is cut into UTC days too.

The PostgreSQL driver (postgresql://, and redshift://, which speaks its protocol) is tested
against a real server; the Snowflake and BigQuery drivers (the `warehouses` extra) run the same
code but are untested against the live services.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import adbc_driver_manager
import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from health_pipeline.raw_input import (
    CRM_TABLES,
    OPTIONAL_COLUMNS,
    OPTIONAL_TABLES,
    RAW_TABLES,
    SIGNAL_TABLES,
    RawInputError,
    check_columns,
)
from health_pipeline.redaction import describe_url_problem, redact
from health_pipeline.sources.landing import LandedSource, Landing, LandingBatch, time_kind
from health_pipeline.sql import SqlFolder

SQL = SqlFolder(__file__)
# Extracted by UTC day; the digest key of the rows without a time.
ACTIVITY_TABLES = ("all_events", "sessions")
UNDATED = "undated"
# Read whole every run, with the key merge_dimension needs (one version: the key only names it);
# the optional signal tables too, when the schema holds them (a CRM synced beside Heap).
DIMENSION_KEYS = {"users": "user_id", "user_migrations": "from_user_id", "accounts": "account_id",
                  "outcomes": "account_id", **{name: RAW_TABLES[name][0] for name in SIGNAL_TABLES}}


def _postgres(url: str, schema: str):
    import adbc_driver_postgresql.dbapi as driver

    return driver.connect("postgresql://" + url.split("://", 1)[1])  # Redshift speaks PostgreSQL's protocol


def _snowflake(url: str, schema: str):
    import adbc_driver_snowflake.dbapi as driver

    # The driver's DSN is the URL without its scheme: user:password@account/database/schema?warehouse=…
    # NUMBER(38,0) ids arrive as integers, not decimals.
    return driver.connect(url.split("://", 1)[1],
                          db_kwargs={"adbc.snowflake.sql.client_option.use_high_precision": "false"})


def _bigquery(url: str, schema: str):
    import adbc_driver_bigquery.dbapi as driver
    from adbc_driver_bigquery import DatabaseOptions

    # bigquery://<project>; credentials are Google's application defaults (GOOGLE_APPLICATION_CREDENTIALS).
    return driver.connect(db_kwargs={DatabaseOptions.PROJECT_ID.value: urlsplit(url).netloc,
                                     DatabaseOptions.DATASET_ID.value: schema})


@dataclass(frozen=True)
class Dialect:
    """One kind of warehouse: its ADBC driver, its SQL, how it marks parameters and binds times."""

    name: str  # sqlglot's dialect
    package: str  # the driver's distribution, for the message when it is not installed
    connect: Callable[[str, str], object]  # (url, schema) -> a DB-API connection
    numbered_parameters: bool  # $1, $2 (PostgreSQL) rather than ?
    binds_timestamps: bool  # else a time is bound as text, which the warehouse casts to the column's type
    session_in_utc: str | None  # the statement that puts the session in UTC, where one is needed


POSTGRES = Dialect("postgres", "adbc-driver-postgresql", _postgres, True, True, "SET TIME ZONE 'UTC'")
DIALECTS = {
    "postgresql": POSTGRES, "postgres": POSTGRES, "redshift": POSTGRES,
    # Snowflake's driver binds no timestamps.
    "snowflake": Dialect("snowflake", "adbc-driver-snowflake", _snowflake, False, False,
                         "ALTER SESSION SET TIMEZONE = 'UTC'"),
    "bigquery": Dialect("bigquery", "adbc-driver-bigquery", _bigquery, False, True, None),  # always UTC
}
URL_SCHEMES = tuple(DIALECTS)


def check_url(url: str) -> None:
    """Refuse a HEALTH_SOURCE_URL that cannot name a warehouse, in words that quote none of it."""
    if problem := "it is not set" if not url.strip() else describe_url_problem(url, URL_SCHEMES):
        raise RawInputError(f"HEALTH_SOURCE=warehouse reads Heap's tables from HEALTH_SOURCE_URL, which is not "
                            f"usable: {problem}")


def render(name: str, dialect: Dialect, params: dict | None = None, **context) -> tuple[str, list]:
    """A warehouse query: the template `name`.sql (DuckDB's dialect) rendered with `context` and
    written by sqlglot in `dialect`, every identifier quoted; and the values of its `$name`
    parameters in the order of the dialect's markers."""
    order: list[str] = []

    def marker(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.Placeholder):
            return node
        order.append(node.name)
        return exp.Parameter(this=exp.Literal.number(len(order))) if dialect.numbered_parameters else exp.Placeholder()

    tree = sqlglot.parse_one(SQL.render(name, **context), read="duckdb").transform(marker)
    return tree.sql(dialect=dialect.name, identify=True, comments=False), [(params or {})[n] for n in order]


@dataclass(frozen=True)
class HeapTable:
    """One of Heap's (or the CRM's) tables in the warehouse, named as the warehouse spells it."""

    name: str  # the contract's name
    schema: str
    table: str
    columns: dict[str, str]  # the contract's columns it has -> as the warehouse spells them
    time_zoned: bool  # its time column is a timestamp with a zone

    @property
    def shown(self) -> str:
        return f"warehouse table {self.schema}.{self.table}"


def _reason(exc: Exception) -> str:
    """A driver's message on one line, redacted."""
    return redact(" ".join(line.strip() for line in str(exc).splitlines() if line.strip()))


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """A failure of the driver (or of the stream it feeds into the landing) as a RawInputError
    naming what was read; the message redacted, the driver's exception not chained."""
    try:
        yield
    except (adbc_driver_manager.Error, pa.ArrowException, duckdb.Error) as exc:
        raise RawInputError(f"{what}: {_reason(exc)}") from None


class HeapWarehouse:
    """A connection to the warehouse that holds Heap's schema, and the queries the source runs on it."""

    def __init__(self, url: str, schema: str):
        check_url(url)
        self.dialect = DIALECTS[url.split("://", 1)[0].lower()]
        try:
            self.conn = self.dialect.connect(url, schema)
        except ImportError:
            raise RawInputError(f"HEALTH_SOURCE_URL names a {self.dialect.name} warehouse, whose ADBC driver is not "
                                f"installed: pip install {self.dialect.package} (or the warehouses extra)") from None
        except adbc_driver_manager.Error as exc:
            raise RawInputError(f"HEALTH_SOURCE_URL: cannot connect to the {self.dialect.name} warehouse: "
                                f"{_reason(exc)}") from None
        with _reading(f"HEALTH_SOURCE_SCHEMA={schema}: cannot list its tables"):
            if self.dialect.session_in_utc:
                self._execute(self.dialect.session_in_utc, []).close()
            try:
                self.catalog = self.conn.adbc_current_catalog  # the database (project) the URL names
            except adbc_driver_manager.NotSupportedError:
                self.catalog = None
            self.schema, self.tables = self._schema_tables(schema)

    def close(self) -> None:
        self.conn.close()

    def _schema_tables(self, schema: str) -> tuple[str, dict[str, str]]:
        """The schema as the warehouse spells it, and its tables by lower-cased name."""
        objects = self.conn.adbc_get_objects(depth="tables", catalog_filter=self.catalog,
                                             db_schema_filter=schema).read_all().to_pylist()
        found = [s for catalog in objects for s in catalog["catalog_db_schemas"] or []
                 if s["db_schema_name"].lower() == schema.lower()]
        if not found:
            raise RawInputError(f"HEALTH_SOURCE_SCHEMA={schema}: the warehouse HEALTH_SOURCE_URL names has no such "
                                "schema (for BigQuery: dataset)")
        spelled = next((s for s in found if s["db_schema_name"] == schema), found[0])
        return spelled["db_schema_name"], {t["table_name"].lower(): t["table_name"]
                                           for t in spelled["db_schema_tables"] or []}

    def table(self, name: str) -> HeapTable | None:
        """Heap's table `name`, its columns checked against the contract; None for an absent optional table."""
        if name not in self.tables:
            if name in OPTIONAL_TABLES:
                return None
            raise RawInputError(f"warehouse table {self.schema}.{name} not found: Heap Connect keeps all_events, "
                                "sessions, users and user_migrations in the schema HEALTH_SOURCE_SCHEMA names")
        spelled = self.tables[name]
        shown = f"warehouse table {self.schema}.{spelled}"
        with _reading(f"{shown} cannot be described"):
            schema = self.conn.adbc_get_table_schema(spelled, catalog_filter=self.catalog,
                                                     db_schema_filter=self.schema)
        lowered = [field.name.lower() for field in schema]
        if len(set(lowered)) < len(lowered):
            twice = next(n for n in lowered if lowered.count(n) > 1)
            raise RawInputError(f"{shown} has the column '{twice}' twice (names match whatever their case)")
        # The contract's checks, on the types the columns will land as.
        with duckdb.connect() as conn:
            landed = conn.from_arrow(schema.empty_table())
            check_columns(name, shown, {c.lower(): str(t) for c, t in zip(landed.columns, landed.types)})
        spelling = {field.name.lower(): field.name for field in schema}
        columns = {c: spelling[c] for c in (*RAW_TABLES[name], *OPTIONAL_COLUMNS.get(name, ())) if c in spelling}
        time_type = schema.field(spelling["time"]).type if "time" in spelling else pa.null()
        if name in ACTIVITY_TABLES and not pa.types.is_timestamp(time_type):
            raise RawInputError(f"{shown} column 'time' has type {time_type}: the warehouse source extracts days "
                                "by a timestamp column, as Heap writes it")
        return HeapTable(name, self.schema, spelled, columns, time_zoned=bool(getattr(time_type, "tz", None)))

    def day_digests(self, table: HeapTable) -> dict[str, str]:
        """Each UTC day's digest of `table` in the warehouse, `rows:hash_sum` by YYYY-MM-DD (UNDATED: no time)."""
        sql, values = render("warehouse_day_digests", self.dialect, schema=self.schema, table=table.table,
                             columns=table.columns)
        with _reading(f"{table.shown}: its days cannot be read"), self._execute(sql, values) as cursor:
            rows = cursor.fetch_arrow_table().to_pylist()
        return {str(r["day"]) if r["day"] is not None else UNDATED: f"{int(r['row_count'])}:{int(r['hash_sum'])}"
                for r in rows}

    @contextmanager
    def rows(self, table: HeapTable, days: tuple[dt.date, dt.date] | None = None,
             undated: bool = False) -> Iterator[pa.RecordBatchReader]:
        """A stream of `table`'s rows: those of the days [first, last], or those without a time
        (`undated`), or all of them."""
        part = "days" if days else "undated" if undated else "whole"
        params = {"start": self._time(days[0], table),
                  "end": self._time(days[1] + dt.timedelta(days=1), table)} if days else {}
        sql, values = render("warehouse_rows", self.dialect, params, schema=self.schema, table=table.table,
                             columns=table.columns, part=part)
        with _reading(f"{table.shown} cannot be read"), self._execute(sql, values) as cursor:
            yield cursor.fetch_record_batch()  # read while the cursor is open

    def _time(self, day: dt.date, table: HeapTable):
        """Midnight UTC of `day`, bound as the dialect binds a time compared with `table`'s."""
        midnight = dt.datetime.combine(day, dt.time())
        if not self.dialect.binds_timestamps:
            return midnight.isoformat(sep=" ")
        return midnight.replace(tzinfo=dt.UTC) if table.time_zoned else midnight

    def _execute(self, sql: str, values: list):
        cursor = self.conn.cursor()
        cursor.execute(sql, values or None)
        return cursor


class WarehouseSource(LandedSource):
    """Heap Connect's tables in a SQL warehouse (`url`: HEALTH_SOURCE_URL; `schema_name`: the schema
    Heap syncs to), landed under `landing_dir`; the CRM's accounts and outcomes from the same
    schema, or from `crm_dir` when it is set."""

    url: str
    schema_name: str = "heap"

    @property
    def kind(self) -> str:
        return "warehouse"

    def prepare(self, log=None) -> dict:
        say = log or (lambda message: None)
        landing = Landing(self.readable_dir)
        read: dict[str, object] = {}
        warehouse = HeapWarehouse(self.url, self.schema_name)
        try:
            with landing.batch(self.kind) as batch:
                for name in ACTIVITY_TABLES:
                    read |= _extract_days(warehouse, batch, warehouse.table(name), say)
                for name in DIMENSION_KEYS:
                    if name in CRM_TABLES and self.crm_dir:
                        continue
                    if (table := warehouse.table(name)) is not None:
                        read[f"{name}.rows"] = _extract_whole(warehouse, batch, table)
        finally:
            warehouse.close()
        return {"source": self.kind, "location": redact(self.url), "schema": warehouse.schema, **read,
                "stale_days": ", ".join(map(str, landing.stale_days())) or "none"}


def _extract_days(warehouse: HeapWarehouse, batch: LandingBatch, table: HeapTable, say) -> dict:
    """Land the days of an activity table whose digest in the warehouse differs from the one
    recorded when they were landed (or that were never landed), replacing their files; record
    the new digests. Returns the days extracted and their rows."""
    digests = warehouse.day_digests(table)
    landed = batch.state["tables"].get(table.name, {}).get("digests", {})
    changed = sorted(day for day in digests.keys() | landed.keys() if digests.get(day) != landed.get(day))
    days = [dt.date.fromisoformat(day) for day in changed if day != UNDATED]
    landed_as = {"columns": dict.fromkeys(table.columns, True), "table_name": table.name, "events": False}
    rows = 0
    for first, last in _consecutive(days):
        batch.replace_days(table.name, first, last)
        with warehouse.rows(table, days=(first, last)) as stream:
            rows += batch.add_activity(table.name, stream, "warehouse-{i}", time_kind=time_kind(stream.schema),
                                       **landed_as)
    if UNDATED in changed:
        batch.replace(f"{table.name}/{UNDATED}")
        with warehouse.rows(table, undated=True) as stream:
            rows += batch.add_activity(f"{table.name}/{UNDATED}", stream, "warehouse-{i}",
                                       time_kind=time_kind(stream.schema), **landed_as)
    batch.state["tables"][table.name] = {"digests": digests}
    extracted = ", ".join([f"{a} .. {b}" if a < b else str(a) for a, b in _consecutive(days)]
                          + [UNDATED] * (UNDATED in changed))
    say(f"warehouse source: {table.name} " + (f"{extracted} extracted, {rows:,} rows" if changed
                                              else "unchanged since it was landed"))
    return {f"{table.name}.days_extracted": extracted or "none: every day is landed and unchanged",
            f"{table.name}.rows": rows}


def _extract_whole(warehouse: HeapWarehouse, batch: LandingBatch, table: HeapTable) -> int:
    """Land a dimension table whole, replacing the one landed before."""
    with warehouse.rows(table) as stream:
        rows = stream.read_all()
    batch.merge_dimension(f"{table.name}.parquet", rows, DIMENSION_KEYS[table.name], version=0, replace=True,
                          table_name=table.name)
    return rows.num_rows


def _consecutive(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted days as runs of consecutive days, (first, last) each."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in days:
        if runs and day == runs[-1][1] + dt.timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs
