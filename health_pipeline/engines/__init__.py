"""What runs the event stage: DuckDB in the pipeline's own process (the default), or Spark, local
or a cluster reached through Spark Connect (HEALTH_ENGINE=spark, HEALTH_SPARK_REMOTE).

On Spark, raw_activity reads the raw events and sessions, classifies, quarantines and
deduplicates them against the event ledger, and counts the daily fact there; the ledger and the
fact are day-partitioned parquet under HEALTH_LAKE_DIR (`lake.Lake`), which Spark writes, audits
and publishes (write, audit, publish), and every later stage reads the published fact from DuckDB.
The dimensions, the quarantine, the history and everything after the fact stay in DuckDB.

- `spark_sql`: the templates' SQL written for Spark by sqlglot, with our fix-ups and a denylist
  (no JVM needed);
- `spark`: the Spark session and the connection-like object the templates run on;
- `lake`: the lake's tables, staged and published.

The Spark session is created on first use, so a DuckDB run never starts a JVM, and pyspark is only
imported then (it comes with the `spark` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import PrivateAttr

from health_pipeline import DATA_DIR
from health_pipeline.redaction import describe_url_problem

if TYPE_CHECKING:
    from health_pipeline.engines.lake import Lake
    from health_pipeline.engines.spark import SparkSql

ENGINES = ("duckdb", "spark")
SPARK_REMOTE_FORM = "sc://host:port (a Spark Connect server; Databricks Connect's URL takes the same form)"


def spark_remote_problem(url: str) -> str | None:
    """What is wrong with a HEALTH_SPARK_REMOTE value, in words that quote none of it (it may carry
    a token); None if it looks usable."""
    return describe_url_problem(url, ("sc",))


class EngineMismatch(RuntimeError):
    """The warehouse's daily fact was built by the other engine: the message says what to do."""


class EventEngine(dg.ConfigurableResource):
    """What runs the event stage (`name`: duckdb or spark); for Spark, where (`spark_remote`: a
    Spark Connect URL, empty for a local session) and the lake it keeps the ledger and the fact in."""

    name: str = "duckdb"
    spark_remote: str = ""
    lake_dir: str = str(DATA_DIR / "lake")

    _spark: SparkSql | None = PrivateAttr(default=None)

    @property
    def on_spark(self) -> bool:
        return self.name.strip().lower() == "spark"

    def spark(self) -> SparkSql:
        """The Spark session, created on the first call."""
        if self._spark is None:
            from health_pipeline.engines.spark import connect

            self._spark = connect(self.spark_remote)
        return self._spark

    def lake(self) -> Lake:
        from health_pipeline.engines.lake import Lake

        return Lake(self.lake_dir)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._spark is not None:
            self._spark.close()
            self._spark = None
