"""One measured task, run in a fresh process: `python -m benchmarks.tasks '<json>'`.

The harness (benchmarks/run.py) starts every measurement as its own process, so each one
starts cold in Python, its peak memory can be read from the operating system, and no state
leaks from one measurement into the next. A task prints one JSON line with its timings.

Tasks:
- pipeline: materialize every asset for [first, last], either as a Dagster run of health_job
  (how `health-pipeline run` and the UI run it) or "direct": the same asset functions called
  in order as plain Python, with no Dagster run around them ("only": just the named steps;
  "recompute_backtest": as if the outcomes had changed).
- seed: the seed approach (benchmarks/seed_baseline.py) for one snapshot date.
- floor: DuckDB's single GROUP BY (user, day, event) over the same raw event files, or
  ("kind": "event_id") a bare GROUP BY event_id, the cost of exact deduplication alone.
- verify: compare the seed baseline with the pipeline's tables for one snapshot date.
- generate: write a scale's raw data with the project's generator, unless it is already there.
- delivery: write that raw data again as Heap Connect's S3 delivery (Avro, a dump a day).
- startup: the cost of starting Python and loading the code location, before any run.
- outcomes: how many outcomes and outcome-lead pairs the backtest of a warehouse had.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import logging
import os
import sys
import time
from types import SimpleNamespace

started = time.perf_counter()


def _window(first: dt.date, last: dt.date):
    import dagster as dg

    return dg.TimeWindow(
        dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC),
        dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC),
    )


class PlainContext:
    """What the asset functions read from their context, without a Dagster run behind it."""

    def __init__(self, window):
        self.partition_time_window = window
        days = (window.end - window.start).days
        self.partition_keys = [(window.start + dt.timedelta(days=i)).date().isoformat() for i in range(days)]
        self.log = logging.getLogger("health_pipeline")
        self.run = SimpleNamespace(tags={})  # no run tags: a normal run
        self.source = {}  # what the raw source said it read (source.*), for the benchmark's report

    def add_asset_metadata(self, metadata, asset_key=None, partition_key=None) -> None:
        """A partition's own figures, which only a Dagster run records; the source's are kept."""
        self.source |= {key.removeprefix("source."): getattr(value, "value", value)
                        for key, value in metadata.items() if key.startswith("source.")}


def pipeline(args: dict) -> dict:
    """Run the whole chain for a date range; settings come from the HEALTH_* environment.

    A Dagster run is recorded as `health-pipeline run` records it: in an instance on disk with the
    project's settings (recovery.open_instance), beside the warehouse and kept with it, so a daily
    run after a backfill writes into an instance that holds the backfill's records. It is opened
    before the clock starts: a new one's creation is not part of the run."""
    from health_pipeline.definitions import HEALTH_JOB, defs
    from health_pipeline.partitions import partition_range_tags
    from health_pipeline.recovery import open_instance
    from health_pipeline.settings import path as setting_path

    first, last = dt.date.fromisoformat(args["first"]), dt.date.fromisoformat(args["last"])
    if args.get("recompute_backtest"):
        forget_backtest_inputs()
    if args["via"] != "dagster":
        loaded = time.perf_counter()
        steps, source = run_direct(first, last, args.get("only"))
        return {"seconds": time.perf_counter() - loaded, "load_seconds": loaded - started, "steps": steps,
                "source": source}
    job = defs.resolve_job_def(HEALTH_JOB)
    os.environ["DAGSTER_HOME"] = str(setting_path("HEALTH_WAREHOUSE").parent / "dagster_home")
    with open_instance() as instance:
        loaded = time.perf_counter()
        result = job.execute_in_process(
            instance=instance, tags=partition_range_tags(first, last),
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        seconds = time.perf_counter() - loaded
    assert result.success
    return {"seconds": seconds, "load_seconds": loaded - started, "steps": {}}


def forget_backtest_inputs() -> None:
    """Make the next backtest recompute, as a run whose outcomes changed would."""
    import duckdb

    from health_pipeline.settings import path as setting_path

    with duckdb.connect(str(setting_path("HEALTH_WAREHOUSE"))) as conn:
        conn.execute("DROP TABLE IF EXISTS export.backtest_inputs")


def run_direct(first: dt.date, last: dt.date, only: list[str] | None = None) -> tuple[dict, dict]:
    """Call each asset's own function in data-flow order (only the steps in `only`, if given),
    with resources built from the environment; return each step's seconds and what the raw source
    said it read."""
    import dagster as dg

    from health_pipeline.definitions import build_assets
    from health_pipeline.engines import EventEngine
    from health_pipeline.resources import ExportTarget, PostgresTarget, Warehouse, raw_source
    from health_pipeline.scorecard.parser import load_config
    from health_pipeline.settings import engine_options
    from health_pipeline.settings import path as setting_path

    threads = os.environ.get("HEALTH_DUCKDB_THREADS")
    resources = {
        "warehouse": Warehouse(
            database=str(setting_path("HEALTH_WAREHOUSE")),
            memory_limit=os.environ.get("HEALTH_DUCKDB_MEMORY_LIMIT") or None,
            threads=int(threads) if threads else None,
        ),
        "raw_source": raw_source(for_dagster=False),  # the source HEALTH_SOURCE or the raw location picks
        "export_target": ExportTarget(export_dir=str(setting_path("HEALTH_EXPORT_DIR"))),
        "postgres": PostgresTarget(url=os.environ.get("HEALTH_SYNC_POSTGRES_URL", "")),
        "engine": EventEngine(**{name: value.get_value() if isinstance(value, dg.EnvVar) else value
                                 for name, value in engine_options().items()}),
    }
    context, steps = PlainContext(_window(first, last)), {}
    for asset in build_assets(load_config()):
        if only and asset.op.name not in only:
            continue
        fn = asset.op.compute_fn.decorated_fn
        wanted = list(inspect.signature(fn).parameters)[1:]
        step_started = time.perf_counter()
        result = fn(context, **{name: resources[name] for name in wanted})
        if inspect.isgenerator(result):  # assets yield their check results, then what they wrote
            list(result)
        steps[asset.op.name] = time.perf_counter() - step_started
    return steps, context.source


def seed(args: dict) -> dict:
    import duckdb

    from benchmarks.seed_baseline import run_seed
    from health_pipeline.scorecard.parser import load_config

    settings = load_config()
    conn = duckdb.connect(config=_duckdb_config())
    loaded = time.perf_counter()
    rows = run_seed(conn, args["raw_dir"], settings, dt.date.fromisoformat(args["day"]))
    return {"seconds": time.perf_counter() - loaded, "load_seconds": loaded - started, "rows": rows}


FLOOR_SQL = {
    # The least any implementation must do: read every event once and count it per user, day and event.
    "group_by": """
        SELECT user_id, CAST(time AS DATE) AS day, event_table_name, count(*) AS events
        FROM read_parquet(?)
        WHERE time >= ? AND time < ?
        GROUP BY ALL
    """,
    # The cost of exact deduplication alone: one group per event id.
    "event_id": """
        SELECT event_id, count(*) AS events
        FROM read_parquet(?)
        WHERE time >= ? AND time < ?
        GROUP BY event_id
    """,
}


def floor(args: dict) -> dict:
    """One bare GROUP BY over the raw event files (FLOOR_SQL[args["kind"]], by default the
    group_by floor)."""
    import duckdb

    conn = duckdb.connect(config=_duckdb_config())
    first, last = dt.date.fromisoformat(args["first"]), dt.date.fromisoformat(args["last"])
    if args.get("recompute_backtest"):
        forget_backtest_inputs()
    loaded = time.perf_counter()
    groups, events = conn.execute(
        f"SELECT count(*), CAST(sum(events) AS BIGINT) FROM ({FLOOR_SQL[args.get('kind', 'group_by')]})",
        [args["events_location"], first, last + dt.timedelta(days=1)],
    ).fetchall()[0]
    return {"seconds": time.perf_counter() - loaded, "load_seconds": loaded - started,
            "groups": groups, "events": events}


def verify(args: dict) -> dict:
    """Mismatching rows between the seed baseline and the pipeline, per shared column."""
    import duckdb

    from benchmarks.seed_baseline import SHARED_ACCOUNT_COLUMNS, SHARED_CONTACT_COLUMNS, define_seed_views
    from health_pipeline.scorecard.parser import load_config

    day = dt.date.fromisoformat(args["day"])
    conn = duckdb.connect(config=_duckdb_config())
    define_seed_views(conn, args["raw_dir"], load_config(), day)
    conn.execute("ATTACH ? AS pipeline (READ_ONLY)", [args["warehouse"]])
    conn.execute("CREATE TEMP TABLE seed_contacts AS SELECT * FROM seed_contact_usage")
    # The account view reads the contact view by name: point it at the table, to compute it once.
    conn.execute("CREATE OR REPLACE TEMP VIEW seed_contact_usage AS SELECT * FROM seed_contacts")
    conn.execute("CREATE TEMP TABLE seed_accounts AS SELECT * FROM seed_account_usage")
    result = {}
    for table, key, columns, seed_table in (
        ("account_metrics", "account_id", SHARED_ACCOUNT_COLUMNS, "seed_accounts"),
        ("contact_metrics", "user_id", SHARED_CONTACT_COLUMNS, "seed_contacts"),
    ):
        differs = " OR ".join(f"p.{c} IS DISTINCT FROM s.{c}" for c in columns)
        per_column = ", ".join(
            f"count(*) FILTER (WHERE p.{c} IS DISTINCT FROM s.{c}) AS {c}" for c in columns
        )
        sql = f"""
            WITH p AS (SELECT * FROM pipeline.core.{table} WHERE snapshot_date = ?)
            SELECT count(*) AS rows, count(*) FILTER (WHERE p.{key} IS NULL OR s.{key} IS NULL) AS unmatched,
                   count(*) FILTER (WHERE {differs}) AS differing, {per_column}
            FROM p FULL OUTER JOIN {seed_table} s ON p.{key} = s.{key}
        """
        cursor = conn.execute(sql, [day])
        names = [d[0] for d in cursor.description]
        row = dict(zip(names, cursor.fetchall()[0]))
        result[table] = {
            "rows": row["rows"], "unmatched": row["unmatched"], "differing": row["differing"],
            "differing_by_column": {c: row[c] for c in columns if row[c]},
        }
    active = conn.execute("SELECT count(*) FROM seed_accounts WHERE usage_28d > 0").fetchall()[0][0]
    result["accounts_with_usage"] = active
    result["day"] = day.isoformat()
    return result


def generate(args: dict) -> dict:
    """Generate (or find) a scale's raw data, so the harness process itself stays small."""
    from pathlib import Path

    from benchmarks.data import SCALES, raw_data

    spec = SCALES[args["scale"]].spec(accounts=args.get("accounts"), days=args.get("days"))
    return {"seconds": time.perf_counter() - started, "counts": raw_data(Path(args["out"]), spec)}


def delivery(args: dict) -> dict:
    """Write a scale's raw data again as Heap's S3 delivery, a dump a day, unless it is there."""
    import json as json_
    from pathlib import Path

    from health_pipeline.sample import write_heap_delivery

    out, marker = Path(args["out"]), Path(args["out"]) / "delivery.json"
    if marker.exists():
        return {"seconds": 0.0, "counts": json_.loads(marker.read_text())}
    counts = write_heap_delivery(Path(args["raw_dir"]), out, dump_days=1)
    marker.write_text(json_.dumps(counts))
    return {"seconds": time.perf_counter() - started, "counts": counts}


def outcomes(args: dict) -> dict:
    """How much the backtest had to pair: outcomes, and outcome-lead pairs per lead."""
    import duckdb

    with duckdb.connect(args["warehouse"], read_only=True) as conn:
        n = conn.execute("SELECT count(*) FROM raw.outcomes").fetchall()[0][0]
        pairs = conn.execute("SELECT sum(n_outcomes + n_downgraded) FROM export.backtest_summary").fetchall()[0][0]
    return {"seconds": 0.0, "outcomes": n, "pairs": int(pairs or 0)}


def report(args: dict) -> dict:
    """Build the morning report of one day from a warehouse: its build time, pages and size."""
    from pathlib import Path

    from health_pipeline import settings
    from health_pipeline.assets.morning_report.site import build_report
    from health_pipeline.resources import Warehouse
    from health_pipeline.scorecard.parser import load_config

    day = dt.date.fromisoformat(args["day"])
    # A run has parsed its settings when it loaded its definitions, before the report's turn
    # (0.6 s at M, most of it importing pandas to read the raw data's first day): not the report's share.
    settings.load()
    with Warehouse(database=args["warehouse"], **_duckdb_config()).get_connection(read_only=True) as conn:
        site = build_report(conn, load_config(), day, Path(args["export_dir"]))
    return {"seconds": time.perf_counter() - started, "build_seconds": site.seconds, "pages": site.pages,
            "size_mb": round(site.size_bytes / 1e6, 1)}


def postgres_sync(args: dict) -> dict:
    """Sync a warehouse's exports for [first, last] into PostgreSQL (`url`), as postgres_sync does."""
    import duckdb
    import psycopg

    from health_pipeline.assets.postgres_sync.asset import sync_range
    from health_pipeline.resources import PostgresTarget

    first, last = dt.date.fromisoformat(args["first"]), dt.date.fromisoformat(args["last"])
    with duckdb.connect(args["warehouse"], read_only=True) as duck, psycopg.connect(args["url"]) as pg:
        counts = sync_range(duck, pg, "health", first, last, PostgresTarget().lock_timeout_seconds)
    return {"seconds": time.perf_counter() - started, "counts": counts}


def startup(args: dict) -> dict:
    from health_pipeline.definitions import defs  # noqa: F401

    return {"seconds": time.perf_counter() - started}


def spark_startup(args: dict) -> dict:
    """A local Spark session started and answering one query: the Spark engine's fixed cost."""
    from health_pipeline.engines.spark import connect

    started_at = time.perf_counter()
    spark = connect("")
    spark.execute("SELECT 1").fetchall()
    seconds = time.perf_counter() - started_at
    spark.close()
    return {"seconds": seconds}


def _duckdb_config() -> dict:
    config = {}
    if os.environ.get("HEALTH_DUCKDB_MEMORY_LIMIT"):
        config["memory_limit"] = os.environ["HEALTH_DUCKDB_MEMORY_LIMIT"]
    if os.environ.get("HEALTH_DUCKDB_THREADS"):
        config["threads"] = int(os.environ["HEALTH_DUCKDB_THREADS"])
    return config


TASKS = {"pipeline": pipeline, "seed": seed, "floor": floor, "verify": verify, "generate": generate,
         "startup": startup, "outcomes": outcomes, "report": report, "postgres_sync": postgres_sync,
         "delivery": delivery, "spark_startup": spark_startup}

if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    print(json.dumps(TASKS[request["task"]](request)))
