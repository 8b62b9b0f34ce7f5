"""Shared helpers: write crafted raw exports, and materialize the pipeline over a date range."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import dagster as dg
import duckdb
import pandas as pd
import pytest

from health_pipeline.assets.morning_report.site import REPORT_DIR
from health_pipeline.definitions import build_assets
from health_pipeline.engines import EventEngine
from health_pipeline.partitions import daily_partitions, partition_range_tags
from health_pipeline.resources import ExportTarget, PostgresTarget, Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.scorecard.parser import load_config
from health_pipeline.sources import FolderSource, RawSource


@dataclass
class RawData:
    """Raw tables as lists of row dicts, written in Heap Connect layout."""

    users: list[dict] = field(default_factory=list)
    accounts: list[dict] = field(default_factory=list)
    sessions: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    migrations: list[dict] = field(default_factory=list)
    outcomes: list[dict] | None = None  # the optional outcomes table, written when given
    # The optional signal tables (csm_pulse, tickets, nps_responses, invoices), each written when
    # given, with the columns its rows name.
    signals: dict[str, list[dict]] = field(default_factory=dict)

    def write(self, raw_dir: Path, fmt: str = "parquet") -> Path:
        raw_dir.mkdir(parents=True, exist_ok=True)
        optional = [c for c in ("churned_at", "crm_account_id", "renewal_date", "seats_purchased")
                    if any(c in row for row in self.accounts)]
        tables = {
            "users": (self.users, ["user_id", "identity", "joindate", "account_id", "role"]),
            "accounts": (self.accounts, ["account_id", "name", "owner", "plan", "arr", "vertical",
                                         "customer_since", "status", *optional]),
            "sessions": (self.sessions, ["session_id", "user_id", "time"]),
            "all_events": (self.events, ["event_id", "user_id", "session_id", "time", "event_table_name"]),
            "user_migrations": (self.migrations, ["from_user_id", "to_user_id", "time"]),
        }
        if self.outcomes is not None:
            tables["outcomes"] = (self.outcomes, ["account_id", "outcome_date", "outcome", "arr_before", "arr_after",
                                                  "reason"])
        for name, rows in self.signals.items():
            tables[name] = (rows, list(dict.fromkeys(column for row in rows for column in row)))
        for name, (rows, columns) in tables.items():
            frame = pd.DataFrame(rows, columns=columns)
            if fmt == "csv":
                frame.to_csv(raw_dir / f"{name}.csv", index=False)
            else:
                for col in ("time", "joindate"):
                    if col in frame and not frame.empty and isinstance(frame[col].iloc[0], str):
                        frame[col] = pd.to_datetime(frame[col])
                frame.to_parquet(raw_dir / f"{name}.parquet", index=False)
        return raw_dir


# The three exports (the sync table, contact_usage, band_changes) and everything they are computed
# from: a test that reads no later table need not also build the backtest, the morning report and
# the alerts, about half of a short run's time.
UP_TO_THE_EXPORTS = (dg.AssetSelection.assets("sync_export", "contact_usage", "band_changes").upstream()
                     .required_multi_asset_neighbors())


@dataclass
class Pipeline:
    """The pipeline's assets wired to one tmp warehouse, raw directory and export directory."""

    root: Path
    settings: HealthConfig = field(default_factory=load_config)
    instance: dg.DagsterInstance | None = None  # a fresh ephemeral instance per run unless given
    future_tolerance_hours: int = 24
    # Crafted data is sparse on purpose: declare its days without events or sessions as known gaps.
    sparse: bool = False
    known_gaps: list[str] = field(default_factory=list)
    snapshot_max_drop: float = 0.5
    memory_limit: str | None = None
    postgres_url: str = ""  # the sync's PostgreSQL; empty: postgres_sync skips
    postgres_lock_timeout_seconds: int = 10
    # Another raw source than the folder raw_dir (health_pipeline.sources), made from the options
    # every source shares: future_tolerance_hours, known_gaps, snapshot_max_drop.
    source: Callable[..., RawSource] | None = None
    engine: EventEngine = field(default_factory=EventEngine)  # the event stage's: DuckDB unless given

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(database=str(self.root / "warehouse.duckdb"), memory_limit=self.memory_limit)

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def export_dir(self) -> Path:
        return self.root / "exports"

    @property
    def raw_source(self) -> RawSource:
        options = {"future_tolerance_hours": self.future_tolerance_hours, "known_gaps": self.known_gaps,
                   "snapshot_max_drop": self.snapshot_max_drop}
        return self.source(**options) if self.source else FolderSource(raw_dir=str(self.raw_dir), **options)

    def quiet_days(self, first_day: dt.date, last_day: dt.date) -> list[str]:
        """The days in the range on which the raw data has no event or no session (times in UTC)."""
        with duckdb.connect() as conn:
            conn.execute("SET TimeZone = 'UTC'")
            days = conn.execute(f"""
                WITH days AS (SELECT CAST(d AS DATE) AS day
                              FROM generate_series($f::TIMESTAMP, $l::TIMESTAMP, INTERVAL 1 DAY) t(d)),
                     active AS (SELECT CAST(CAST("time" AS TIMESTAMPTZ) AS DATE) AS day
                                FROM {self._reader("all_events")}
                                INTERSECT
                                SELECT CAST(CAST("time" AS TIMESTAMPTZ) AS DATE) FROM {self._reader("sessions")})
                SELECT day FROM days EXCEPT SELECT day FROM active ORDER BY day
            """, {"f": first_day, "l": last_day}).fetchall()
        return [str(day) for (day,) in days]

    def _reader(self, table: str) -> str:
        csv = self.raw_dir / f"{table}.csv"
        if csv.exists():
            return f"read_csv('{csv}', all_varchar = true)"
        single = self.raw_dir / f"{table}.parquet"
        return f"read_parquet('{single if single.exists() else self.raw_dir / table / '**' / '*.parquet'}')"

    def run(self, first_day: str | dt.date, last_day: str | dt.date, selection=None, tags=None):
        first_day, last_day = (dt.date.fromisoformat(str(d)) for d in (first_day, last_day))
        if self.sparse:  # from the first partition: a run also extracts the earlier days no run extracted
            first_partition = daily_partitions().start.date()
            self.known_gaps = sorted(set(self.known_gaps)
                                     | set(self.quiet_days(min(first_partition, first_day), last_day)))
        # One "planned" event per asset for the run's days rather than one per asset and day: Dagster's
        # own bookkeeping before the run starts (a third of a long range's time in these runs), which
        # nothing here reads. Deployed runs keep Dagster's default, which marks a failed run's days failed.
        with mock.patch.dict(os.environ, {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"}):
            return dg.materialize(
                build_assets(self.settings),
                resources={
                    "warehouse": self.warehouse,
                    "raw_source": self.raw_source,
                    "export_target": ExportTarget(export_dir=str(self.export_dir)),
                    "postgres": PostgresTarget(url=self.postgres_url,
                                               lock_timeout_seconds=self.postgres_lock_timeout_seconds),
                    "engine": self.engine,
                },
                tags={**partition_range_tags(first_day, last_day), **(tags or {})},
                selection=selection,
                instance=self.instance or dg.DagsterInstance.ephemeral(),
                raise_on_error=False,
            )

    def materialize(self, first_day: str | dt.date, last_day: str | dt.date, selection=None, tags=None):
        result = self.run(first_day, last_day, selection, tags)
        assert result.success, self.failure_of(result)
        return result

    def failure(self, first_day: str | dt.date, last_day: str | dt.date, selection=None) -> tuple[str, str]:
        """The exception class name and message of a run that must fail."""
        result = self.run(first_day, last_day, selection)
        assert not result.success
        return self.failure_of(result)

    @staticmethod
    def failure_of(result) -> tuple[str, str] | None:
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                while error.cls_name.startswith("Dagster") and error.cause is not None:
                    error = error.cause  # Dagster wraps the asset's own exception
                return error.cls_name, error.message.strip().split(": ", 1)[1]  # minus "module.Class: "
        return None

    @staticmethod
    def raw_activity_metadata(result) -> dict:
        """The figures raw_activity reported on all the tables it wrote, as one dict of values
        (Dagster's own dagster/* keys are per table, so they are left out)."""
        return {k: v.value for m in result.asset_materializations_for_node("raw_activity")
                for k, v in m.metadata.items() if not k.startswith("dagster/")}

    @staticmethod
    def row_count(result, asset: str) -> int:
        """The rows the run reported writing for `asset`: its result's rows_in_run for a dated
        table, else its dagster/row_count."""
        metadata = next(e.materialization.metadata for e in result.get_asset_materialization_events()
                        if e.asset_key == dg.AssetKey(asset))
        return (metadata.get("rows_in_run") or metadata["dagster/row_count"]).value

    def query(self, sql: str, params=None) -> pd.DataFrame:
        with duckdb.connect(str(self.root / "warehouse.duckdb"), read_only=True) as conn:
            return conn.execute(sql, params or []).df()

    def row(self, table: str, key: str, value: str, snapshot_date: str) -> dict:
        frame = self.query(
            f"SELECT * FROM {table} WHERE {key} = ? AND snapshot_date = ?", [value, snapshot_date]
        )
        assert len(frame) == 1, f"expected one {table} row for {key}={value} on {snapshot_date}"
        return frame.iloc[0].to_dict()


def run_records(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict[str, dg.EventLogRecord]:
    """Per partition, the materialization a run recorded for `asset`: its own days', and those of
    the later days it refreshed, which are recorded beside the run (assets.record_refreshed)."""
    def of_the_run(record: dg.EventLogRecord) -> bool:
        refreshed_by = record.asset_materialization.metadata.get("refreshed_by_run")
        return record.run_id == run_id or (refreshed_by is not None and refreshed_by.value == run_id)

    records = instance.fetch_materializations(dg.AssetKey(asset), limit=10_000).records
    return dict(sorted((record.partition_key, record) for record in records if of_the_run(record)))


def sync_table(database: Path) -> pd.DataFrame:
    """The exported rows, without computed_at (the one column that differs from run to run)."""
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(
            "SELECT * EXCLUDE (computed_at) FROM export.account_health ORDER BY snapshot_date, account_id"
        ).df()


def export_files(root: Path) -> dict[str, pd.DataFrame | bytes]:
    """Every file under <root>/exports (hidden ones too), by its path: tables without computed_at,
    other files (the backtest's plot) as their bytes. The morning report is left out: a run
    builds it for its own latest days only (test_morning_report.py)."""
    out = {}
    for path in sorted((root / "exports").rglob("*")):
        if not path.is_file() or path.relative_to(root / "exports").parts[0] == REPORT_DIR:
            continue
        if path.suffix in (".parquet", ".csv"):
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
            out[str(path.relative_to(root))] = frame.drop(columns="computed_at", errors="ignore")
        else:
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    return Pipeline(tmp_path)
