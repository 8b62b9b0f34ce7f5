"""A local folder of raw tables in the contract's own layout: a Heap Connect warehouse export, or
the sample (health_pipeline.raw_input says how each table may be written)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from health_pipeline.sources.base import RawSource


class FolderSource(RawSource):
    """A directory of raw exports in Heap Connect's warehouse layout (health_pipeline.raw_input).

    Each table is `<name>.parquet`, `<name>.csv`, or a folder `<name>/` of parquet files.
    """

    raw_dir: str

    @property
    def kind(self) -> str:
        return "folder"

    @property
    def readable_dir(self) -> Path:
        return Path(self.raw_dir)

    def prepare(self, log=None) -> dict:
        return {"source": self.kind, "raw_dir": str(Path(self.raw_dir).resolve())}

    def add_live_sample_days(self, through: dt.date) -> list[dt.date]:
        """In a live sample (health-pipeline generate-sample --live), generate its days up to
        `through` that are not there yet; return them. Real exports are never touched."""
        from health_pipeline.sample import extend_sample

        return extend_sample(Path(self.raw_dir), through)
