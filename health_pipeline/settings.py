"""Every environment variable the pipeline reads, in one place, with its default and its check.

`load` parses every HEALTH_* setting at once, when the definitions load and when
`health-pipeline check` or `run` starts, before anything is written: each bad one is a line of
one SettingsError naming the variable and what it accepts. The accessors below read that parse,
made once per environment. Paths, DuckDB limits and the future tolerance reach the Dagster
resources through `dg.EnvVar` when they are set, so the UI shows where a value came from.
HEALTH_CONFIG, HEALTH_PARTITIONS_START, HEALTH_LATE_DAYS and HEALTH_BACKTEST_LEAD_DAYS shape the
assets and the schedule themselves.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import duckdb

from health_pipeline import DATA_DIR
from health_pipeline.limits import Limit
from health_pipeline.redaction import describe_url_problem, redact

if TYPE_CHECKING:
    from health_pipeline.scorecard.model import HealthConfig

DEFAULT_LATE_DAYS = 2
DEFAULT_BACKTEST_LEAD_DAYS = (30, 60, 90)
DEFAULT_REPORT_DAYS = 1
DEFAULT_REPORT_CURRENCY = "USD"
# How the report writes ARR in a currency: its symbol before the amount where it has a common one,
# else the code and a space ("CHF 1,200").
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "AUD": "A$", "CAD": "C$"}
PERSONAL_DATA_CHOICES = ("show", "hide")
CRM_ID_PLACEHOLDER = "{crm_account_id}"
DEFAULT_CONFIG_PATH = Path(__file__).parent / "scorecard" / "default.yaml"

PATH_DEFAULTS = {
    "HEALTH_WAREHOUSE": DATA_DIR / "warehouse.duckdb",
    "HEALTH_RAW_DIR": DATA_DIR / "raw",
    "HEALTH_EXPORT_DIR": DATA_DIR / "exports",
    # Where a remote source (a Heap S3 delivery) is landed as local parquet for raw_activity to read.
    "HEALTH_LANDING_DIR": DATA_DIR / "landing",
}

# The bounds of the numeric settings (limits.Limit): ten years of days is more than any run,
# report or backtest reaches.
DAYS_BACK = Limit(0, 3650, "a whole number of days", whole=True)
LEAD_DAYS = Limit(1, 3650, "a whole number of days", whole=True)
TOLERANCE_HOURS = Limit(0, 87600, "a whole number of hours", whole=True)
THREADS = Limit(1, 1024, "a whole number of threads", whole=True)
SHARE = Limit(0, 1, "a share")


class SettingsError(ValueError):
    """Bad settings, one line each: the setting, its value where it is no secret, and what it accepts."""

    def __init__(self, lines: Iterable[str]):
        self.lines = tuple(redact(line) for line in lines)
        super().__init__("\n".join(self.lines))


def is_set(env_var: str) -> bool:
    return bool(os.environ.get(env_var))


def path(env_var: str) -> Path:
    """The path a path setting resolves to now: the environment variable, else its default."""
    return Path(os.environ.get(env_var) or PATH_DEFAULTS.get(env_var, ""))


def path_config(env_var: str) -> str | dg.EnvVar:
    """A path setting as a resource field: an EnvVar when set (the UI names it), else the default."""
    return dg.EnvVar(env_var) if is_set(env_var) else str(PATH_DEFAULTS[env_var])


def source() -> str:
    """HEALTH_SOURCE: folder, heap_s3 or warehouse (health_pipeline.sources); unset, the raw location's
    shape decides."""
    from health_pipeline.sources import SOURCES

    chosen = os.environ.get("HEALTH_SOURCE", "").strip()
    if chosen and chosen not in SOURCES:
        raise ValueError(f"HEALTH_SOURCE={chosen!r} is not a source; use one of {', '.join(SOURCES)}")
    return chosen


def crm_mapping() -> str:
    """HEALTH_CRM_MAPPING: a shipped CRM mapping's name or a mapping file, checked whole (every
    problem of the file, one line each); empty when unset."""
    from health_pipeline.sources.crm_mappings import load_mapping

    value = os.environ.get("HEALTH_CRM_MAPPING", "").strip()
    if value:
        load_mapping(value)
    return value


def _source_url() -> bool:
    """Whether HEALTH_SOURCE_URL is set, checked (never quoted) when the warehouse source reads it."""
    if os.environ.get("HEALTH_SOURCE", "").strip() == "warehouse":
        source_url(for_dagster=False)
    return is_set("HEALTH_SOURCE_URL")


def source_url(for_dagster: bool = True) -> str | dg.EnvVar:
    """HEALTH_SOURCE_URL: the warehouse the `warehouse` source reads Heap's tables from. It carries
    the password, so a bad value is described, never quoted (a ValueError); for Dagster it stays an
    EnvVar."""
    from health_pipeline.sources.warehouse import check_url

    value = os.environ.get("HEALTH_SOURCE_URL", "")
    check_url(value)
    return dg.EnvVar("HEALTH_SOURCE_URL") if for_dagster else value


def source_schema() -> str:
    """HEALTH_SOURCE_SCHEMA: the warehouse schema (a BigQuery dataset) Heap Connect syncs to; default heap."""
    return os.environ.get("HEALTH_SOURCE_SCHEMA", "").strip() or "heap"


def config_path() -> Path:
    """HEALTH_CONFIG: the scorecard file, else the shipped default."""
    return Path(os.environ.get("HEALTH_CONFIG") or DEFAULT_CONFIG_PATH)


def partitions_start() -> str:
    """HEALTH_PARTITIONS_START: the first daily partition, YYYY-MM-DD. Unset, it is the first day
    of the raw data: a sample's first day (from its manifest), else the raw events' first day
    (isolated days before the bulk of the data aside: raw_input.event_days), else, with no raw
    data yet, the first day of the sample `health-pipeline run` would generate."""
    value = os.environ.get("HEALTH_PARTITIONS_START")
    if not value:
        return raw_first_day().isoformat()
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"HEALTH_PARTITIONS_START={value!r} is not a YYYY-MM-DD date") from None
    return value


def raw_first_day() -> dt.date:
    """The first day of the data in HEALTH_RAW_DIR (see partitions_start)."""
    from health_pipeline.raw_input import RawInputError, event_days
    from health_pipeline.sample import SampleSpec, sample_spec

    raw_dir = path("HEALTH_RAW_DIR")
    if (spec := sample_spec(raw_dir)) is not None:
        return spec.start
    try:
        days = event_days(raw_dir)
    except (RawInputError, duckdb.Error):
        days = None  # unreadable raw data fails the run with its reason, not the definitions' load
    return days.first if days else SampleSpec.ending(yesterday()).start


def yesterday() -> dt.date:
    """The last complete UTC day: the newest daily partition."""
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


# --- each setting: the accessors read `load()`; the others are parsers it calls -----------------

def late_days() -> int:
    """HEALTH_LATE_DAYS: how many days before yesterday the daily run redoes (default 2)."""
    return load().late_days


def report_days() -> int:
    """HEALTH_REPORT_DAYS: how many of a run's latest days get a morning report (default 1; 0: none)."""
    return load().report_days


def report_base_url() -> str:
    """HEALTH_REPORT_BASE_URL: where the report folder (`<export dir>/report/`) is served, without a
    trailing slash; empty when unset (the report's links are then file paths)."""
    return load().report_base_url


def report_currency() -> str:
    """HEALTH_REPORT_CURRENCY: the ISO 4217 code of the ARR figures (default USD)."""
    return load().report_currency


def report_personal_data() -> bool:
    """HEALTH_REPORT_PERSONAL_DATA: whether the report shows contacts' emails and names (show, the
    default) or only their user ids (hide), for a site shared widely."""
    return load().report_personal_data == "show"


def crm_url_template() -> str:
    """HEALTH_CRM_URL_TEMPLATE: a CRM record's URL with {crm_account_id} where the account's CRM id
    goes; empty when unset (alerts then link no CRM record)."""
    return load().crm_url_template


def backtest_lead_days() -> tuple[int, ...]:
    """HEALTH_BACKTEST_LEAD_DAYS: comma-separated lead times, in days, at which the backtest reads
    the score before each outcome (default 30,60,90)."""
    return load().backtest_lead_days


def duckdb_limits() -> dict:
    """HEALTH_DUCKDB_MEMORY_LIMIT and HEALTH_DUCKDB_THREADS as Warehouse fields, where set."""
    loaded, limits = load(), {}
    if loaded.duckdb_memory_limit is not None:
        limits["memory_limit"] = dg.EnvVar("HEALTH_DUCKDB_MEMORY_LIMIT")
    if loaded.duckdb_threads is not None:
        limits["threads"] = dg.EnvVar.int("HEALTH_DUCKDB_THREADS")
    return limits


def known_gaps() -> list[str]:
    """HEALTH_KNOWN_GAPS: comma-separated YYYY-MM-DD days the raw export has no activity on purpose."""
    value = os.environ.get("HEALTH_KNOWN_GAPS", "")
    days = [day.strip() for day in value.split(",") if day.strip()]
    for day in days:
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"HEALTH_KNOWN_GAPS: {day!r} is not a YYYY-MM-DD date") from None
    return days


def raw_source_options() -> dict:
    """HEALTH_FUTURE_TOLERANCE_HOURS, HEALTH_KNOWN_GAPS, HEALTH_SNAPSHOT_MAX_DROP and
    HEALTH_CRM_MAPPING as RawSource fields, where set."""
    loaded, options = load(), {}
    if loaded.crm_mapping:
        options["crm_mapping"] = dg.EnvVar("HEALTH_CRM_MAPPING")
    if loaded.future_tolerance_hours is not None:
        options["future_tolerance_hours"] = dg.EnvVar.int("HEALTH_FUTURE_TOLERANCE_HOURS")
    if loaded.known_gaps:
        options["known_gaps"] = list(loaded.known_gaps)
    if loaded.snapshot_max_drop is not None:
        options["snapshot_max_drop"] = loaded.snapshot_max_drop
    return options


def raw_source_values() -> dict:
    """raw_source_options with plain values, for a source the CLI uses outside a run."""
    return {name: value.get_value() if isinstance(value, dg.EnvVar) else value
            for name, value in raw_source_options().items()}


def postgres_options() -> dict:
    """HEALTH_SYNC_POSTGRES_URL and HEALTH_SYNC_POSTGRES_SCHEMA as PostgresTarget fields, where set;
    a URL libpq could not read fails here, naming the variable, never quoting its value."""
    options = {}
    if is_set("HEALTH_SYNC_POSTGRES_URL"):
        if problem := postgres_url_problem(os.environ["HEALTH_SYNC_POSTGRES_URL"]):
            raise ValueError(problem)
        options["url"] = dg.EnvVar("HEALTH_SYNC_POSTGRES_URL")
    if is_set("HEALTH_SYNC_POSTGRES_SCHEMA"):
        options["schema_name"] = dg.EnvVar("HEALTH_SYNC_POSTGRES_SCHEMA")
    return options


def postgres_url_problem(url: str) -> str | None:
    """What is wrong with a HEALTH_SYNC_POSTGRES_URL value (see url_problem); None if it looks usable."""
    return url_problem("HEALTH_SYNC_POSTGRES_URL", url, ("postgresql", "postgres"),
                       "postgresql://user:password@host:port/database")


def url_problem(name: str, value: str, schemes: tuple[str, ...], form: str) -> str | None:
    """What is wrong with the URL in the secret setting `name`, as one line that names it and the
    form it takes and never quotes `value` (the URL carries the secret); None if it looks usable."""
    problem = describe_url_problem(value, schemes)
    return f"{name} is not a URL of the form {form}: {problem}" if problem else None


def snapshot_max_drop() -> float | None:
    """HEALTH_SNAPSHOT_MAX_DROP: the share (0..1) of an account's users a new export may lose."""
    return _number("HEALTH_SNAPSHOT_MAX_DROP", SHARE)


# --- the other parsers: a bad value raises ValueError, one line naming the variable ----------------

def _number(env_var: str, limit: Limit, default=None):
    """A numeric setting as `limit` allows it; unset (or empty), `default`."""
    text = os.environ.get(env_var, "")
    if not text:
        return default
    try:
        value = int(text) if limit.whole else float(text)
    except ValueError:
        value = None
    if not limit.allows(value):
        raise ValueError(f"{env_var}={text!r} is not {limit}")
    return value


def _lead_days() -> tuple[int, ...]:
    value = os.environ.get("HEALTH_BACKTEST_LEAD_DAYS") or ",".join(map(str, DEFAULT_BACKTEST_LEAD_DAYS))
    leads = [lead.strip() for lead in value.split(",") if lead.strip()]
    if not leads or not all(lead.isdigit() and LEAD_DAYS.allows(int(lead)) for lead in leads):
        raise ValueError(f"HEALTH_BACKTEST_LEAD_DAYS={value!r} is not a comma-separated list of lead times, "
                         f"each {LEAD_DAYS}, such as 30,60,90")
    return tuple(sorted({int(lead) for lead in leads}))


def _memory_limit() -> str | None:
    value = os.environ.get("HEALTH_DUCKDB_MEMORY_LIMIT")
    if value:
        try:
            duckdb.connect(config={"memory_limit": value}).close()
        except duckdb.Error as exc:
            raise ValueError(f"HEALTH_DUCKDB_MEMORY_LIMIT={value!r} is not a DuckDB memory limit, such as '2GB' "
                             f"({str(exc).splitlines()[0]})") from None
    return value or None


def warehouse_problem(database: str) -> str | None:
    """Why DuckDB cannot use `database` (HEALTH_WAREHOUSE) as a file, or None."""
    if "?" in database:
        return (f"HEALTH_WAREHOUSE={database!r}: DuckDB reads '?' in a path as the start of connection options; "
                "choose a path without it")
    if Path(database).is_dir():
        return f"HEALTH_WAREHOUSE={database!r} is a directory; it must name the DuckDB file"
    return None


def _warehouse() -> Path:
    warehouse = path("HEALTH_WAREHOUSE")
    if problem := warehouse_problem(str(warehouse)):
        raise ValueError(problem)
    return warehouse


def _directory(env_var: str, holds: str) -> Callable[[], Path]:
    def parse() -> Path:
        folder = path(env_var)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{env_var}={str(folder)!r} is a file; it must name the folder of {holds}")
        return folder

    return parse


def _web_url(env_var: str, form: str) -> str:
    """An http(s) URL setting, stripped; empty when unset. It is no secret, but like every URL it is
    described, never quoted, when it is wrong."""
    value = os.environ.get(env_var, "").strip()
    if value and (problem := url_problem(env_var, value, ("https", "http"), form)):
        raise ValueError(problem)
    return value


def _report_base_url() -> str:
    return _web_url("HEALTH_REPORT_BASE_URL", "https://host/path").rstrip("/")


def _crm_url_template() -> str:
    value = _web_url("HEALTH_CRM_URL_TEMPLATE", f"https://host/path/{CRM_ID_PLACEHOLDER}")
    if value and value.count(CRM_ID_PLACEHOLDER) != 1:
        raise ValueError(f"HEALTH_CRM_URL_TEMPLATE must hold {CRM_ID_PLACEHOLDER} once, where the account's CRM id "
                         "goes, such as https://acme.my.salesforce.com/{crm_account_id}")
    return value


def _report_currency() -> str:
    value = os.environ.get("HEALTH_REPORT_CURRENCY", "").strip() or DEFAULT_REPORT_CURRENCY
    if not (len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()):
        raise ValueError(f"HEALTH_REPORT_CURRENCY={value!r} is not a currency code of three capital letters, "
                         "such as USD, EUR or GBP")
    return value


def _report_personal_data() -> str:
    value = os.environ.get("HEALTH_REPORT_PERSONAL_DATA", "").strip() or PERSONAL_DATA_CHOICES[0]
    if value not in PERSONAL_DATA_CHOICES:
        raise ValueError(f"HEALTH_REPORT_PERSONAL_DATA={value!r} is not one of {', '.join(PERSONAL_DATA_CHOICES)}")
    return value


def _parsed_by(parse: Callable[[], object]):
    return field(metadata={"parse": parse})


@dataclass(frozen=True)
class Settings:
    """Every HEALTH_* setting, parsed (`load`); None: unset, the resource's own default applies."""

    raw_dir: Path = _parsed_by(_directory("HEALTH_RAW_DIR", "raw exports"))
    warehouse: Path = _parsed_by(_warehouse)
    export_dir: Path = _parsed_by(_directory("HEALTH_EXPORT_DIR", "exports"))
    config: Path = _parsed_by(config_path)  # the file itself is read by scorecard.parser.load_config
    partitions_start: str = _parsed_by(partitions_start)
    late_days: int = _parsed_by(lambda: _number("HEALTH_LATE_DAYS", DAYS_BACK, DEFAULT_LATE_DAYS))
    report_days: int = _parsed_by(lambda: _number("HEALTH_REPORT_DAYS", DAYS_BACK, DEFAULT_REPORT_DAYS))
    report_base_url: str = _parsed_by(_report_base_url)
    report_currency: str = _parsed_by(_report_currency)
    report_personal_data: str = _parsed_by(_report_personal_data)
    crm_url_template: str = _parsed_by(_crm_url_template)
    backtest_lead_days: tuple[int, ...] = _parsed_by(_lead_days)
    future_tolerance_hours: int | None = _parsed_by(lambda: _number("HEALTH_FUTURE_TOLERANCE_HOURS",
                                                                    TOLERANCE_HOURS))
    known_gaps: list[str] = _parsed_by(known_gaps)
    snapshot_max_drop: float | None = _parsed_by(snapshot_max_drop)
    duckdb_memory_limit: str | None = _parsed_by(_memory_limit)
    duckdb_threads: int | None = _parsed_by(lambda: _number("HEALTH_DUCKDB_THREADS", THREADS))
    postgres: dict = _parsed_by(postgres_options)
    source: str = _parsed_by(source)
    source_url_set: bool = _parsed_by(_source_url)
    crm_mapping: str = _parsed_by(crm_mapping)


def load() -> Settings:
    """Every setting, parsed; a SettingsError lists each bad one on a line of its own. Parsed once
    per environment: the same HEALTH_* variables give the same Settings without parsing again."""
    return _parse(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("HEALTH_"))))


@functools.lru_cache(maxsize=1)
def _parse(environment: tuple) -> Settings:  # `environment` is the cache key; the parsers read os.environ
    values, problems = {}, []
    for setting in fields(Settings):
        try:
            values[setting.name] = setting.metadata["parse"]()
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingsError(problems)
    return Settings(**values)


def load_with_scorecard() -> tuple[Settings, HealthConfig]:
    """Every setting and the scorecard file HEALTH_CONFIG names, as (Settings, HealthConfig): what
    the definitions load, and `health-pipeline check` and `run` check first. One SettingsError
    lists every problem in either, one line each."""
    # Imported here: the parser reads settings, and the sinks know their secrets' forms.
    from health_pipeline.assets.alerts.sinks import secret_problems
    from health_pipeline.scorecard.parser import ConfigError, load_config

    problems = []
    try:
        loaded = load()
    except SettingsError as exc:
        problems += exc.lines
    try:
        config = load_config()
    except ConfigError as exc:
        if not problems:
            raise  # the scorecard alone: its own error, which names the file's problems
        problems += exc.lines
    else:
        # A sink's secret that is set but unusable (unset, the sink reports it and its alerts wait).
        problems += secret_problems(config.alerts)
    if problems:
        raise SettingsError(problems)
    return loaded, config
