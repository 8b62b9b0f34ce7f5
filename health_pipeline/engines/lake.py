"""The lake: the Spark engine's event ledger (raw.events, raw.sessions) and daily fact
(core.daily_contact_activity), each a folder of parquet partitioned by UTC day under
HEALTH_LAKE_DIR, `<table>/activity_date=YYYY-MM-DD/part-….parquet`, written by Spark.

Write, audit, publish: a run writes the days it extracted to `_staging/<table>/` (`stage`), the
checks read the tables as they will be (`as_published`: the published days the run leaves alone,
and the staged ones), and only then does `publish` replace the days: Spark's committer writes the
staged partitions with dynamic partition overwrite (each day's folder is replaced; days the run
has no rows for are left), and a day the run extracted that is now empty is removed. A failed
check stops the run before `publish`, so the published lake stays as it was.

What plain parquet gives: Spark's committer writes every file of the job first, then, day by day,
deletes the published folder and renames the new one into place (and an emptied day is deleted
after it). So a reader never sees a day half-written, but may, for an instant, see it missing; the
days of one run are replaced one after the other, so a reader in between sees some days new and
some old (the `warehouse` pool keeps the pipeline's own readers out), and a crash in between leaves
the lake so until the run is repeated, which makes it whole (re-running is always safe). A table
format (Delta Lake, Iceberg) would commit all the days in one transaction that readers see at once
or not at all, keep the versions to roll back to, and delete an emptied day in the same commit; it
needs its JARs on the cluster, and this project does not ship an untested path for one.

The lake is a path that Spark and this process both reach (a local folder, or a shared or mounted
one for a cluster): DuckDB reads the published fact from it, and removes the days that emptied.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

    from health_pipeline.engines.spark import SparkSql

PARTITION = "activity_date"
# warehouse table -> its folder in the lake
FOLDERS = {"raw.sessions": "raw_sessions", "raw.events": "raw_events",
           "core.daily_contact_activity": "daily_contact_activity"}
STAGING = "_staging"  # skipped by Spark's and DuckDB's readers of a table: it starts with _


class Lake:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def path(self, table: str) -> Path:
        return self.root / FOLDERS[table]

    def staging(self, table: str) -> Path:
        return self.root / STAGING / FOLDERS[table]

    def days(self, table: str) -> list[dt.date]:
        """The days `table` has published."""
        prefix = f"{PARTITION}="
        folder = self.path(table)
        return sorted(dt.date.fromisoformat(p.name.removeprefix(prefix)) for p in folder.glob(f"{prefix}*")
                      if p.is_dir()) if folder.is_dir() else []

    def has(self, table: str) -> bool:
        return any(self.path(table).glob(f"{PARTITION}=*/*.parquet"))

    def published(self, spark: SparkSql, table: str, schema: StructType | None = None) -> DataFrame | None:
        """The published rows of `table`; None before its first publish."""
        if not self.has(table):
            return None
        reader = spark.session.read.option("mergeSchema", "true")
        return (reader.schema(schema) if schema else reader).parquet(str(self.path(table)))

    def stage(self, rows: DataFrame, table: str, first: bool) -> None:
        """Write `rows` to the table's staging folder, by day: the run's `first` write replaces
        whatever a failed run left there, the others add to it."""
        rows.write.mode("overwrite" if first else "append").partitionBy(PARTITION).parquet(str(self.staging(table)))

    def staged(self, spark: SparkSql, table: str, schema: StructType) -> DataFrame:
        return spark.session.read.schema(schema).parquet(str(self.staging(table)))

    def as_published(self, spark: SparkSql, table: str, days: list[dt.date], schema: StructType) -> DataFrame:
        """`table` as publishing the staged `days` will leave it: its other published days and the staged ones."""
        from pyspark.sql import functions as F

        staged = self.staged(spark, table, schema)
        published = self.published(spark, table)
        if published is None:
            return staged
        kept = published.where(~F.col(PARTITION).isin(days)) if days else published
        return kept.unionByName(staged, allowMissingColumns=True)

    def publish(self, spark: SparkSql, table: str, days: list[dt.date], schema: StructType) -> None:
        """Replace the published `days` of `table` with the staged ones: by Spark's committer, with
        dynamic partition overwrite; then remove each of `days` that has no staged rows."""
        staged = self.staged(spark, table, schema)
        written = {row[0] for row in staged.select(PARTITION).distinct().collect()}
        staged.write.mode("overwrite").option("partitionOverwriteMode", "dynamic").partitionBy(PARTITION) \
            .parquet(str(self.path(table)))
        for day in sorted(set(days) - written):
            shutil.rmtree(self.path(table) / f"{PARTITION}={day.isoformat()}", ignore_errors=True)

    def discard_staging(self) -> None:
        shutil.rmtree(self.root / STAGING, ignore_errors=True)
