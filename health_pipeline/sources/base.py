"""What every raw source is: a Dagster resource that brings Heap's tables and the CRM's into the
raw-input contract (health_pipeline.raw_input) and describes each table for raw_activity to read,
the CRM's through the CRM mapping when there is one (health_pipeline.sources.crm_mappings)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb

from health_pipeline.raw_input import CRM_TABLES, CrmTable, EventDays, RawTable, event_days, locate_table
from health_pipeline.sources.crm_mappings import load_mapping


class RawSource(dg.ConfigurableResource):
    """The options every source shares; a source is one of its subclasses (health_pipeline.sources)."""

    # Rows stamped later than this past the run's clock are quarantined as future_time.
    future_tolerance_hours: int = 24
    # Days the source is known to have no activity (an outage, a holiday shutdown), YYYY-MM-DD.
    # Every other day must have events and sessions, or the raw audit fails.
    known_gaps: list[str] = []
    # The share of an account's users a new users export may lose against the last accepted
    # snapshot before the run stops (an account missing from the accounts export always stops it).
    snapshot_max_drop: float = 0.5
    # The CRM's tables in the CRM's own names: a shipped CRM mapping (salesforce, hubspot) or the
    # path of a mapping file (HEALTH_CRM_MAPPING). Empty: accounts and outcomes use our names.
    crm_mapping: str = ""

    @property
    def kind(self) -> str:
        """The source's name in HEALTH_SOURCE and in the raw stage's metadata."""
        raise NotImplementedError

    @property
    def known_gap_days(self) -> tuple[dt.date, ...]:
        return tuple(dt.date.fromisoformat(day) for day in self.known_gaps)

    @property
    def readable_dir(self) -> Path:
        """The folder, in the contract's layout, that raw_activity reads Heap's tables from."""
        raise NotImplementedError

    def prepare(self, log=None) -> dict:
        """Bring the raw tables up to date where raw_activity reads them (land new deliveries);
        return what was read, for the raw stage's metadata. A local folder needs nothing."""
        return {"source": self.kind}

    def table(self, conn: duckdb.DuckDBPyConnection, name: str) -> RawTable | None:
        """Locate and describe a raw table; None for an absent optional table."""
        return locate_table(conn, self.readable_dir, name, self.crm_table(name))

    def crm_table(self, name: str) -> CrmTable | None:
        """How the CRM mapping reads raw table `name`; None for Heap's tables, for a table the
        mapping leaves out, and without a mapping."""
        if not self.crm_mapping or name not in CRM_TABLES:
            return None
        return load_mapping(self.crm_mapping).tables.get(name)

    def event_days(self) -> EventDays | None:
        """The first and last UTC day of the raw events readable now; None when there are none."""
        return event_days(self.readable_dir)

    def stale_days(self) -> list[dt.date]:
        """Days whose raw rows changed since a run last extracted them (a resync, late rows)."""
        return []

    def forget_stale_days(self, first_day: dt.date, last_day: dt.date) -> None:
        """After a run of [first_day, last_day] committed: those days are no longer stale."""

    def add_live_sample_days(self, through: dt.date) -> list[dt.date]:
        """In a live sample, generate its days up to `through` that are not there yet; return them."""
        return []
