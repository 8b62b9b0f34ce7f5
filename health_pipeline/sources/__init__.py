"""Where the raw data comes from: one Dagster resource per kind of source, each bringing Heap's
tables and the CRM's into the raw-input contract (health_pipeline.raw_input) that raw_activity
reads, and saying what it read.

- `folder` (FolderSource): a local folder of parquet or CSV tables in Heap Connect's warehouse
  layout (the sample).
- `heap_s3` (HeapS3Source): Heap Connect's S3 delivery (manifests and Avro dumps), a local copy
  or the bucket itself, landed incrementally under HEALTH_LANDING_DIR.
- `warehouse` (WarehouseSource): Heap Connect's tables in a SQL warehouse (PostgreSQL or
  Redshift, Snowflake, BigQuery) at HEALTH_SOURCE_URL, schema HEALTH_SOURCE_SCHEMA, read through
  ADBC and landed incrementally under HEALTH_LANDING_DIR. Only chosen by name.

Unset, HEALTH_SOURCE follows the shape of HEALTH_RAW_DIR: an `s3://` location, or a folder that
holds `manifests/`, is a Heap S3 delivery; any other folder is read as it is.

Every source reads the CRM's tables (accounts, outcomes, and the optional signal tables csm_pulse,
tickets, nps_responses and invoices) in our names, or in the CRM's own through the CRM mapping
HEALTH_CRM_MAPPING names (`crm_mappings`: salesforce, hubspot, or a file).
"""

from __future__ import annotations

from pathlib import Path

from health_pipeline.sources.base import RawSource
from health_pipeline.sources.folder import FolderSource
from health_pipeline.sources.heap_s3 import MANIFESTS, HeapS3Source
from health_pipeline.sources.warehouse import WarehouseSource

SOURCES = {"folder": FolderSource, "heap_s3": HeapS3Source, "warehouse": WarehouseSource}

__all__ = ["SOURCES", "FolderSource", "HeapS3Source", "RawSource", "WarehouseSource", "source_kind"]


def source_kind(location: str, chosen: str = "") -> str:
    """The kind of source: `chosen` (HEALTH_SOURCE) when given, else what the location looks like."""
    if chosen:
        if chosen not in SOURCES:
            raise ValueError(f"HEALTH_SOURCE={chosen!r} is not a source; use one of {', '.join(SOURCES)}")
        return chosen
    if location.startswith("s3://") or (Path(location) / MANIFESTS).is_dir():
        return "heap_s3"
    return "folder"
