"""Every environment variable the pipeline reads, in one place, with its default and its check.

Paths and DuckDB limits reach the Dagster resources through `dg.EnvVar` when they are set, so
the UI shows where a value came from. HEALTH_CONFIG, HEALTH_PARTITIONS_START,
HEALTH_LATE_DAYS and HEALTH_BACKTEST_LEAD_DAYS are read when the definitions load, because they shape the assets and the
schedule themselves.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import duckdb

from health_pipeline import DATA_DIR

DEFAULT_LATE_DAYS = 2
DEFAULT_BACKTEST_LEAD_DAYS = (30, 60, 90)
DEFAULT_REPORT_DAYS = 1
DEFAULT_CONFIG_PATH = Path(__file__).parent / "scorecard" / "default.yaml"

PATH_DEFAULTS = {
    "HEALTH_WAREHOUSE": DATA_DIR / "warehouse.duckdb",
    "HEALTH_RAW_DIR": DATA_DIR / "raw",
    "HEALTH_EXPORT_DIR": DATA_DIR / "exports",
    # Where a remote source (a Heap S3 delivery) is landed as local parquet for raw_activity to read.
    "HEALTH_LANDING_DIR": DATA_DIR / "landing",
}


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
    return os.environ.get("HEALTH_SOURCE", "").strip()


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
    of the raw data: a sample's first day (from its manifest), else the raw events' first day,
    else, with no raw data yet, the first day of the sample `health-pipeline run` would generate."""
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
    return days[0] if days else SampleSpec.ending(yesterday()).start


def yesterday() -> dt.date:
    """The last complete UTC day: the newest daily partition."""
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


def late_days() -> int:
    """HEALTH_LATE_DAYS: how many days before yesterday the daily run redoes."""
    value = os.environ.get("HEALTH_LATE_DAYS") or str(DEFAULT_LATE_DAYS)
    if not value.strip().isdigit():
        raise ValueError(f"HEALTH_LATE_DAYS={value!r} is not a whole number of days (0 or more)")
    return int(value)


def report_days() -> int:
    """HEALTH_REPORT_DAYS: how many of a run's latest days get a morning report (default 1; 0: none)."""
    value = os.environ.get("HEALTH_REPORT_DAYS") or str(DEFAULT_REPORT_DAYS)
    if not value.strip().isdigit():
        raise ValueError(f"HEALTH_REPORT_DAYS={value!r} is not a whole number of days (0 or more)")
    return int(value)


def backtest_lead_days() -> tuple[int, ...]:
    """HEALTH_BACKTEST_LEAD_DAYS: comma-separated lead times, in days, at which the backtest reads
    the score before each outcome (default 30,60,90)."""
    value = os.environ.get("HEALTH_BACKTEST_LEAD_DAYS") or ",".join(map(str, DEFAULT_BACKTEST_LEAD_DAYS))
    leads = [lead.strip() for lead in value.split(",") if lead.strip()]
    if not leads or not all(lead.isdigit() and int(lead) >= 1 for lead in leads):
        raise ValueError(f"HEALTH_BACKTEST_LEAD_DAYS={value!r} is not a list of whole numbers of days (1 or more), "
                         "such as 30,60,90")
    return tuple(sorted({int(lead) for lead in leads}))


def duckdb_limits() -> dict:
    """HEALTH_DUCKDB_MEMORY_LIMIT and HEALTH_DUCKDB_THREADS as Warehouse fields, where set; a value
    DuckDB would refuse fails here, naming the variable."""
    limits = {}
    if is_set("HEALTH_DUCKDB_MEMORY_LIMIT"):
        value = os.environ["HEALTH_DUCKDB_MEMORY_LIMIT"]
        try:
            duckdb.connect(config={"memory_limit": value}).close()
        except duckdb.Error as exc:
            raise ValueError(f"HEALTH_DUCKDB_MEMORY_LIMIT={value!r} is not a DuckDB memory limit, such as '2GB' "
                             f"({str(exc).splitlines()[0]})") from None
        limits["memory_limit"] = dg.EnvVar("HEALTH_DUCKDB_MEMORY_LIMIT")
    if is_set("HEALTH_DUCKDB_THREADS"):
        value = os.environ["HEALTH_DUCKDB_THREADS"]
        if not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"HEALTH_DUCKDB_THREADS={value!r} is not a whole number of threads (1 or more)")
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
    options = {}
    if is_set("HEALTH_CRM_MAPPING"):
        from health_pipeline.sources.crm_mappings import load_mapping

        load_mapping(os.environ["HEALTH_CRM_MAPPING"])  # a bad mapping stops the start, naming every problem
        options["crm_mapping"] = dg.EnvVar("HEALTH_CRM_MAPPING")
    if is_set("HEALTH_FUTURE_TOLERANCE_HOURS"):
        options["future_tolerance_hours"] = dg.EnvVar.int("HEALTH_FUTURE_TOLERANCE_HOURS")
    if is_set("HEALTH_KNOWN_GAPS"):
        options["known_gaps"] = known_gaps()
    if is_set("HEALTH_SNAPSHOT_MAX_DROP"):
        options["snapshot_max_drop"] = snapshot_max_drop()
    return options


def raw_source_values() -> dict:
    """raw_source_options with plain values, for a source the CLI uses outside a run."""
    return {name: value.get_value() if isinstance(value, dg.EnvVar) else value
            for name, value in raw_source_options().items()}


def postgres_options() -> dict:
    """HEALTH_SYNC_POSTGRES_URL and HEALTH_SYNC_POSTGRES_SCHEMA as PostgresTarget fields, where set."""
    options = {}
    if is_set("HEALTH_SYNC_POSTGRES_URL"):
        options["url"] = dg.EnvVar("HEALTH_SYNC_POSTGRES_URL")
    if is_set("HEALTH_SYNC_POSTGRES_SCHEMA"):
        options["schema_name"] = dg.EnvVar("HEALTH_SYNC_POSTGRES_SCHEMA")
    return options


def snapshot_max_drop() -> float:
    """HEALTH_SNAPSHOT_MAX_DROP: the share (0..1) of an account's users a new export may lose."""
    value = os.environ.get("HEALTH_SNAPSHOT_MAX_DROP", "")
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise ValueError(f"HEALTH_SNAPSHOT_MAX_DROP={value!r} is not a share between 0 and 1, such as 0.5")
    return share
