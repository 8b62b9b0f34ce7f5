"""The raw-input contract: which tables a raw export holds, their columns, and how each is read.

A raw directory holds each table as `<name>.parquet`, `<name>.csv`, or a folder `<name>/` or
`<name>.parquet/` (as Spark writes one) of parquet files at any depth, skipping files and
folders whose names start with `_` or `.` (the Hive and Spark convention for temporary and
hidden files). `locate_table` finds a table, checks its structure and describes it as a
`RawTable`; the SQL that reads its rows is in the raw_activity asset's templates. Headers match
case-insensitively; ids are read trimmed.

The CRM's tables (accounts, outcomes, and the optional signals: csm_pulse, tickets,
nps_responses, invoices) may also be read in the CRM's own names through a CRM
mapping (a `CrmTable`, loaded by health_pipeline.sources.crm_mappings): the table is found by
the CRM's name for it, each of our columns is read from the CRM's column the mapping names, and
its values are translated by the mapping's value map, before any rule of the contract applies.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    # Renewals, churns, downgrades and expansions from the CRM: what the backtest checks the score against.
    "outcomes": ("account_id", "outcome_date", "outcome"),
    # The signals beyond product usage, from the CRM, the CS tool, the help desk, surveys and billing.
    "csm_pulse": ("account_id", "pulse_date", "sentiment"),
    "tickets": ("ticket_id", "account_id", "opened_at"),
    "nps_responses": ("responded_at", "score"),  # and user_id or account_id (ONE_OF_COLUMNS)
    "invoices": ("invoice_id", "account_id", "due_date"),
}
SIGNAL_TABLES = ("csm_pulse", "tickets", "nps_responses", "invoices")
OPTIONAL_TABLES = {"user_migrations", "outcomes", *SIGNAL_TABLES}
# The tables the CRM (or another business system) provides, not Heap: they may be read through a
# CRM mapping, and a remote source reads them from the CRM's folder.
CRM_TABLES = ("accounts", "outcomes", *SIGNAL_TABLES)
# The customer outcomes the outcomes table may hold.
CUSTOMER_OUTCOMES = ("renewed", "churned", "downgraded", "expanded")
# The values of the signals' enumerations; any other value is quarantined with a reason.
PULSE_SENTIMENTS = ("green", "yellow", "red")  # best to worst
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")
HIGH_PRIORITIES = ("high", "urgent")
TICKET_STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
CLOSED_STATUSES = ("solved", "closed")
# Optional columns a table is read with when present.
OPTIONAL_COLUMNS = {"users": ("role",),
                    "accounts": ("churned_at", "crm_account_id", "renewal_date", "seats_purchased"),
                    "outcomes": ("arr_before", "arr_after", "reason"),
                    "csm_pulse": ("note", "author"), "tickets": ("closed_at", "priority", "status"),
                    "nps_responses": ("user_id", "account_id"), "invoices": ("paid_at", "amount")}
# A table that needs at least one of these optional columns (each row names one of them).
ONE_OF_COLUMNS = {"nps_responses": ("user_id", "account_id")}

# Columns read as ids: trimmed, and empty means missing.
INTEGER_COLUMN_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
ID_COLUMNS = {"account_id", "user_id", "session_id", "event_id", "from_user_id", "to_user_id", "ticket_id",
              "invoice_id"}
# Columns with a small set of values, matched case-insensitively: read trimmed and lower-cased.
ENUM_COLUMNS = {"status", "plan", "role", "outcome", "sentiment", "priority"}
# The loader's own column for the file a row came from; a source column cannot take this name.
SOURCE_FILE_COLUMN = "__health_pipeline_source_file"
ABSENT = "absent"  # the format of an optional table the source does not have (RawTable.absent)

# column -> what its values are read as; every other column is read as text.
VALUE_TYPES = {
    "time": "TIMESTAMPTZ", "joindate": "DATE", "customer_since": "DATE", "churned_at": "DATE", "outcome_date": "DATE",
    "renewal_date": "DATE",
    "arr": "DOUBLE", "arr_before": "DOUBLE", "arr_after": "DOUBLE", "seats_purchased": "DOUBLE",
    "pulse_date": "DATE", "opened_at": "TIMESTAMPTZ", "closed_at": "TIMESTAMPTZ", "responded_at": "TIMESTAMPTZ",
    "score": "DOUBLE", "due_date": "DATE", "paid_at": "DATE", "amount": "DOUBLE",
}
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
class CrmTable:
    """How a CRM's own table stands for one of ours (accounts, outcomes): the CRM's name for the
    table, and for each of our columns the CRM's column it is read from, with a value map for an
    enumeration whose values the CRM writes its own way, or the constant every row has."""

    crm: str  # the CRM, as messages name it: "Salesforce"
    table: str  # the CRM's table: its file or folder name, such as Account
    columns: dict[str, str]  # our column -> the CRM's column, as the mapping writes it
    # our enumeration -> the CRM's value (trimmed, lower-cased) -> ours; other values are kept as written
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)  # our column -> the value of every row

    def shown(self, column: str) -> str:
        """Our column as the CRM's file holds it, for messages: 'AnnualRevenue' (→ arr)."""
        return f"'{self.columns[column]}' (→ {column})"


@dataclass(frozen=True)
class RawTable:
    """One raw table as DuckDB should read it: its files, their format and its columns' types."""

    name: str
    path: str  # the file, or the folder of parquet files, as the user named it
    files: tuple[str, ...]
    format: str  # "parquet", "csv", or ABSENT
    column_types: dict[str, str]  # lower-cased column -> source type
    csv_header: tuple[str, ...] = ()  # a CSV's header as written
    crm: CrmTable | None = None  # the CRM mapping the table is read through, if any
    view: str = ""  # a view of the files that another engine registered (the Spark engine's reader)

    @classmethod
    def absent(cls, name: str) -> RawTable:
        """An optional table the source does not have, read as no rows: the statements that read
        it need no branch of their own, and every column reads as missing."""
        return cls(name, "", (), ABSENT, {})

    @property
    def is_csv(self) -> bool:
        return self.format == "csv"

    @property
    def reader(self) -> str:
        """A DuckDB table function over the table's files, bound by `params`; or the engine's view of them."""
        if self.format == ABSENT:
            return f"(SELECT NULL::VARCHAR AS {SOURCE_FILE_COLUMN}, NULL::BIGINT AS file_row_number WHERE false)"
        if self.view:
            return f'"{self.view}"'
        if self.is_csv:
            # The dialect is fixed (RFC 4180) and nothing is sniffed: odd values must not change
            # how a file splits, and a ragged row fails with its line number.
            return ("read_csv($location, header = true, auto_detect = false, columns = $csv_columns, "
                    f"delim = ',', quote = '\"', escape = '\"', filename = '{SOURCE_FILE_COLUMN}')")
        return f"read_parquet($location, filename = '{SOURCE_FILE_COLUMN}', union_by_name = true)"

    @property
    def params(self) -> dict:
        """The values the reader binds, and a CRM mapping's that the `rows` macro binds: a
        constant as $crm_<column>, a value map as $crm_<column>_from and $crm_<column>_to."""
        if self.format == ABSENT:
            return {}
        if self.view:
            params = {}
        elif self.is_csv:
            params = {"location": self.files[0], "csv_columns": {c: "VARCHAR" for c in self.csv_header}}
        else:
            params = {"location": list(self.files)}
        for column in self.present_columns:
            if self.is_constant(column):
                params[f"crm_{column}"] = self.crm.constants[column]
            elif self.has_value_map(column):
                params[f"crm_{column}_from"] = list(self.crm.values[column])
                params[f"crm_{column}_to"] = list(self.crm.values[column].values())
        return params

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the pipeline reads: the required ones, then the optional ones."""
        return (*RAW_TABLES[self.name], *OPTIONAL_COLUMNS.get(self.name, ()))

    @property
    def present_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if self.has(c))

    def source(self, column: str) -> str | None:
        """The file's column that `column` is read from: itself, or under a CRM mapping the CRM's
        column the mapping names (None when it names none)."""
        return column if self.crm is None else self.crm.columns.get(column)

    def is_constant(self, column: str) -> bool:
        return self.crm is not None and column in self.crm.constants

    def has_value_map(self, column: str) -> bool:
        return self.crm is not None and column in self.crm.values

    def _source_type(self, column: str) -> str | None:
        source = self.source(column)
        return None if source is None else self.column_types.get(source.lower())

    def has(self, column: str) -> bool:
        return self.is_constant(column) or self._source_type(column) is not None

    def is_id(self, column: str) -> bool:
        return column in ID_COLUMNS

    def is_enum(self, column: str) -> bool:
        return column in ENUM_COLUMNS

    def value_type(self, column: str) -> str:
        return VALUE_TYPES.get(column, "VARCHAR")

    def is_integer(self, column: str) -> bool:
        """An integer column: its values are ids as they are, each with one text form."""
        return self._source_type(column) in INTEGER_COLUMN_TYPES

    def is_plain_timestamp(self, column: str) -> bool:
        """A TIMESTAMP without time zone: usable as is, and DuckDB can prune row groups by it."""
        dtype = self._source_type(column) or ""
        return dtype.startswith("TIMESTAMP") and "TIME ZONE" not in dtype

    @contextmanager
    def reading(self, conn: duckdb.DuckDBPyConnection):
        """Report a failure to read this table's files as a RawInputError naming the table and file."""
        try:
            yield
        except duckdb.OutOfMemoryException:
            raise  # not bad input: the warehouse says which setting to raise
        except duckdb.Error as exc:
            if len(self.files) > 1:
                check_each_file(conn, self.name, self.files, self.crm)
            raise RawInputError(f"raw table '{self.name}' ({self.path}) cannot be read: {_first_lines(exc)}") from exc


def _first_lines(exc: Exception, lines: int = 3) -> str:
    """DuckDB's message without its list of possible fixes and settings."""
    text = str(exc).split("\nPossible fixes:")[0]
    return " ".join(line.strip() for line in text.splitlines()[:lines] if line.strip())


def _required(name: str, crm: CrmTable | None) -> list[tuple[str, str]]:
    """The columns every file of raw table `name` must have, as the file names them (lower-cased),
    each with the column of ours it is read as; under a CRM mapping, the CRM's columns it names."""
    if crm is None:
        return [(column, column) for column in RAW_TABLES[name]]
    return [(crm.columns[column].lower(), column) for column in RAW_TABLES[name] if column in crm.columns]


def _check_required_present(name: str, file: str, columns: set[str], crm: CrmTable | None) -> None:
    """Raise a RawInputError if a file of raw table `name`, whose lower-cased columns are
    `columns`, lacks a required one: named as the contract names it, or as the CRM does."""
    missing = [column for source, column in _required(name, crm) if source not in columns]
    either = ONE_OF_COLUMNS.get(name, ())
    sources = [(column if crm is None else crm.columns.get(column, "")).lower() for column in either]
    if not missing and either and not set(sources) & columns:
        missing = [" or ".join(either)]
    if not missing:
        return
    has = ", ".join(sorted(columns))
    if crm is None:
        raise RawInputError(f"raw table '{name}' ({file}) lacks required column(s) {', '.join(missing)}; it has {has}")
    shown = [crm.shown(c) if c in crm.columns else c for c in missing]
    raise RawInputError(f"{crm.crm} mapping: {name} needs the CRM's column{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(shown)}, which {file} lacks; it has {has}")


def check_columns(name: str, file: str, types: dict[str, str], crm: CrmTable | None = None) -> None:
    """Raise a RawInputError if a file of raw table `name` lacks a required column or has one of a
    type its values cannot be read as. `types` maps the file's lower-cased columns to DuckDB types."""
    _check_required_present(name, file, set(types) - {"filename"}, crm)
    for source, column in _required(name, crm):
        target = VALUE_TYPES.get(column, "VARCHAR")
        if not READABLE_AS[target].match(types[source]):
            raise RawInputError(
                f"raw table '{name}' ({file}) column {crm.shown(column) if crm else repr(column)} has type "
                f"{types[source]}, which cannot be read as {target}"
            )


def check_each_file(conn: duckdb.DuckDBPyConnection, name: str, files: tuple[str, ...],
                    crm: CrmTable | None = None) -> None:
    """Check every parquet file of a folder on its own, to name the one that breaks the whole."""
    for file in files:
        try:
            described = conn.execute("DESCRIBE SELECT * FROM read_parquet($file)", {"file": file}).fetchall()
        except duckdb.Error as exc:
            raise RawInputError(f"raw table '{name}' ({file}) cannot be read: {_first_lines(exc)}") from exc
        check_columns(name, file, _column_types(name, file, described), crm)


def _visible(path: Path, root: Path) -> bool:
    """False for a file inside, or named like, a hidden or temporary folder or file (`_x`, `.x`)."""
    return not any(part.startswith(("_", ".")) for part in path.relative_to(root).parts)


def _find(raw_dir: Path, name: str, stem: str) -> tuple[Path, str, tuple[str, ...]] | None:
    """Where table `name`, written as `stem`, is in `raw_dir`: its path, format and files; None if
    it is absent. A table in more than one format is an error: which one is current would be a guess."""
    found = []
    for path, fmt in ((raw_dir / f"{stem}.parquet", "parquet"), (raw_dir / f"{stem}.csv", "csv")):
        if path.is_file():
            found.append((path, fmt, (str(path),)))
    # `<stem>.parquet/` is a folder of part files, as Spark and many other tools write a table.
    for folder in (raw_dir / stem, raw_dir / f"{stem}.parquet"):
        if folder.is_dir():
            files = tuple(str(p) for p in sorted(folder.rglob("*.parquet")) if p.is_file() and _visible(p, folder))
            if files:
                found.append((folder, "parquet", files))
    if len(found) > 1:
        raise RawInputError(
            f"raw table '{name}' is in more than one place in {raw_dir}: "
            + ", ".join(p.name + ("/" if p.is_dir() else "") for p, *_ in found) + "; keep one"
        )
    return found[0] if found else None


def _column_types(name: str, file: str, described) -> dict[str, str]:
    """The file's columns, lower-cased, with their types; two names equal but for case are an error."""
    types: dict[str, str] = {}
    for column, dtype, *_ in described:
        if column == SOURCE_FILE_COLUMN:
            continue
        if column.lower() in types:
            raise RawInputError(f"raw table '{name}' ({file}) has the column '{column.lower()}' twice "
                                f"(headers match whatever their case); rename or drop one")
        types[column.lower()] = dtype
    return types


def _csv_header(name: str, file: str) -> tuple[str, ...]:
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            return tuple(next(csv.reader(handle), []))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RawInputError(f"raw table '{name}' ({file}) cannot be read: {exc}") from exc


def _check_parquet_files(conn: duckdb.DuckDBPyConnection, name: str, files: tuple[str, ...],
                         crm: CrmTable | None) -> None:
    """Each file has every required column (union_by_name would fill a missing one with NULLs),
    and no column twice when case is ignored (DuckDB would rename the second, 'User_ID_1')."""
    twice = conn.execute(
        "SELECT file_name, lower(name) FROM parquet_schema($files) WHERE type IS NOT NULL "
        "GROUP BY ALL HAVING count(*) > 1 ORDER BY ALL LIMIT 1", {"files": list(files)}
    ).fetchall()
    for file, column in twice:
        raise RawInputError(f"raw table '{name}' ({file}) has the column '{column}' twice "
                            f"(headers match whatever their case); rename or drop one")
    per_file = conn.execute(
        "SELECT file_name, list(lower(name)) FROM parquet_schema($files) GROUP BY file_name "
        "ORDER BY file_name", {"files": list(files)}
    ).fetchall()
    for file, columns in per_file:
        _check_required_present(name, file, set(columns) - {"schema"}, crm)


def locate_table(conn: duckdb.DuckDBPyConnection, raw_dir: Path, name: str,
                 crm: CrmTable | None = None) -> RawTable | None:
    """Locate and describe raw table `name`; None for an absent optional table. Through a CRM
    mapping (`crm`), the table is the CRM's, found by the CRM's name for it."""
    stem = crm.table if crm else name
    found = _find(raw_dir, name, stem)
    if found is None:
        if name in OPTIONAL_TABLES:
            return None
        raise RawInputError(
            f"raw table '{name}' not found in {raw_dir}: expected {stem}.parquet, {stem}.csv "
            f"or a folder {stem}/ or {stem}.parquet/ of parquet files"
            + (f" (the {crm.crm} mapping's {name})" if crm else "")
        )
    path, fmt, files = found
    header = _csv_header(name, files[0]) if fmt == "csv" else ()
    _column_types(name, str(path), [(column, "VARCHAR") for column in header])  # no header twice
    table = RawTable(name, str(path), files, fmt, {}, header)
    try:
        described = conn.execute(f"DESCRIBE SELECT * FROM {table.reader}", table.params).fetchall()
        if fmt == "parquet":
            _check_parquet_files(conn, name, files, crm)
    except duckdb.OutOfMemoryException:
        raise  # not bad input: the warehouse says which setting to raise
    except duckdb.Error as exc:
        if len(files) > 1:
            check_each_file(conn, name, files, crm)
        raise RawInputError(f"raw table '{name}' ({path}) cannot be read: {_first_lines(exc)}") from exc
    types = _column_types(name, str(path), described)
    try:
        check_columns(name, str(path), types, crm)
    except RawInputError:
        if len(files) > 1:
            check_each_file(conn, name, files, crm)
        raise
    return RawTable(name, str(path), files, fmt, types, header, crm)


# An event day with no other event day within this many days after it (before the rest of the
# data), or before it (after the rest), is isolated: a clock reset to 1970, a year typed wrong.
# So is any day after today, however many there are: the future is never the data's. Isolated
# days do not move the first partition, a run's default days or the data's last day.
ISOLATION_DAYS = 28


@dataclass(frozen=True)
class EventDays:
    """The UTC days of the raw events: the data's first and last day, and the isolated days left
    out before and after them, each with its raw rows, (day, rows)."""

    first: dt.date
    last: dt.date
    isolated_before: tuple[tuple[dt.date, int], ...] = ()
    isolated_after: tuple[tuple[dt.date, int], ...] = ()

    @classmethod
    def of(cls, days: list[dt.date], rows: dict[dt.date, int], today: dt.date) -> EventDays:
        """The span of sorted event `days`, which hold every day before its first and after its
        last, each with its `rows`: found among the days up to `today` (all of them, if none is)."""
        past = [d for d in days if d <= today] or days
        first, last = _bulk_ends(past) or (past[0], past[-1])
        return cls(first, last, tuple((d, rows[d]) for d in days if d < first),
                   tuple((d, rows[d]) for d in days if d > last))


def _bulk_ends(days: list[dt.date]) -> tuple[dt.date, dt.date] | None:
    """The first and last day of the data in sorted event `days`: the earliest day followed by
    another within ISOLATION_DAYS, and the latest one preceded by another within them. None when
    no two days come that close: nothing then tells the bulk of the data from the rest."""
    close = [i for i in range(len(days) - 1) if (days[i + 1] - days[i]).days <= ISOLATION_DAYS]
    return (days[close[0]], days[close[-1] + 1]) if close else None


def event_days(raw_dir: Path, today: dt.date | None = None) -> EventDays | None:
    """The UTC days of the raw events (EventDays); None when there are none. `today` is the UTC
    date now unless given. Parquet files with plain timestamps answer from their row groups'
    statistics, reading rows only of the row groups that may hold days before the first or after
    the last (none, in an export without isolated days); otherwise every event's time is read, once."""
    today = today or dt.datetime.now(dt.UTC).date()
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        table = locate_table(conn, Path(raw_dir), "all_events")
        with table.reading(conn):
            if not table.is_csv and table.is_plain_timestamp("time"):
                ends = conn.execute(
                    "SELECT CAST(TRY_CAST(stats_min_value AS TIMESTAMP) AS DATE), "
                    "CAST(TRY_CAST(stats_max_value AS TIMESTAMP) AS DATE) "
                    "FROM parquet_metadata($files) WHERE lower(path_in_schema) = 'time'", {"files": list(table.files)}
                ).fetchall()
                # Each row group's first and last day are event days; what lies between is unknown.
                # The bulk's first day among them is the true one or later (and its last the true one
                # or earlier), and every day outside them is read with its rows: the true ends follow.
                known = {day for pair in ends for day in pair}
                if None not in known and (bulk := _bulk_ends(sorted(d for d in known if d <= today))):
                    first, last = bulk
                    rows = _rows_per_day(conn, table, '"time" < $first', {"first": first}) | _rows_per_day(
                        conn, table, '"time" >= $after_last', {"after_last": last + dt.timedelta(days=1)})
                    return EventDays.of(sorted(known | set(rows)), rows, today)
            rows = _rows_per_day(conn, table)
    return EventDays.of(sorted(rows), rows, today) if rows else None


def _rows_per_day(conn: duckdb.DuckDBPyConnection, table: RawTable, where: str = "true",
                  params: dict | None = None) -> dict[dt.date, int]:
    """The raw event rows per UTC day, of the rows `where` holds: a condition on the raw time
    column, so that DuckDB reads only the row groups whose statistics it cannot rule out."""
    return dict(conn.execute(
        f'SELECT CAST(TRY_CAST("time" AS TIMESTAMPTZ) AS DATE) AS "day", count(*) FROM {table.reader} '
        f'WHERE {where} GROUP BY ALL HAVING "day" IS NOT NULL', {**table.params, **(params or {})}).fetchall())
