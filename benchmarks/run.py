"""Benchmark the health pipeline against its peers and against DuckDB itself.

    python -m benchmarks.run --scale M

Generates (or reuses) raw data for the scale under data/bench/<scale>/, runs the six
scenarios of docs/performance.md with A and B alternated, and writes the medians and ratios
as JSON and as a markdown table to benchmarks/results/<scale>.{json,md}. At scale M it also
measures the scaling curve and draws docs/scaling.png (needs the `bench` extra, matplotlib).
Every measurement is a fresh process (benchmarks/tasks.py), so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # run as `python benchmarks/run.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.data import BENCH_DIR, SCALES, Scale
from health_pipeline import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"
PLOT_PATH = PROJECT_ROOT / "docs" / "scaling.png"
# Scaling curve: accounts per point (about 200 events per account per weekday), and its history.
CURVE_ACCOUNTS = (500, 1_500, 5_000, 15_000)
CURVE_DAYS = 15
CURVE_BACKFILL_DAYS = (10, 30)


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class SpillWatch:
    """Polls a directory's total size in a thread until stopped; keeps the largest, in MB."""

    def __init__(self, directory: Path, every: float = 0.25):
        self.directory, self.every, self.peak = directory, every, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()

    def size(self) -> int:
        total = 0
        for path in self.directory.glob("*") if self.directory.is_dir() else ():
            try:
                total += path.stat().st_size
            except FileNotFoundError:  # DuckDB removed it between the listing and the stat
                pass
        return total

    def poll(self) -> None:
        while not self.done.wait(self.every):
            self.peak = max(self.peak, self.size())

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return round(self.peak / 2**20, 1)


@dataclass
class Bench:
    scale: Scale
    work: Path
    reps: int
    backfill_reps: int
    duckdb_env: dict[str, str]

    @property
    def raw_dir(self) -> Path:
        return self.work / "raw"

    def day(self, n: int) -> dt.date:
        """The n-th day of the data, counting from 1."""
        return self.scale.spec().start + dt.timedelta(days=n - 1)

    def task(self, request: dict, env: dict | None = None, spill_dir: Path | None = None) -> dict:
        """Run one measurement in a fresh process; add its wall time and its own peak RSS, and the
        peak size of `spill_dir` (DuckDB's temp directory) while it ran."""
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.tasks", json.dumps(request)],
                cwd=PROJECT_ROOT, env={**os.environ, **self.duckdb_env, **(env or {})}, stdout=out, stderr=err,
            )
            spill = SpillWatch(spill_dir) if spill_dir else None
            # wait4 reports this one child's resource usage, including its peak resident set.
            _, status, usage = os.wait4(proc.pid, 0)
            if spill:
                result_spill = spill.stop()
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - started
            out.seek(0), err.seek(0)
            if proc.returncode != 0:
                raise RuntimeError(f"task {request} failed:\n{err.read()[-4000:]}")
            result = json.loads(out.read().strip().splitlines()[-1])
        result.update(wall=wall, peak_rss_mb=round(usage.ru_maxrss / 1024, 1))  # ru_maxrss is in KiB
        if spill:
            result["peak_spill_mb"] = result_spill
        return result

    def pipeline(self, name: str, first: dt.date, last: dt.date, via: str = "dagster",
                 fresh: bool = False, raw_dir: Path | None = None, only: list[str] | None = None,
                 engine: str = "duckdb") -> dict:
        """Materialize [first, last] in the warehouse `name` (a fresh one if asked), its event stage
        on `engine`. A remote source's landing folder and the Spark engine's lake are the
        warehouse's neighbours, and go with it when fresh."""
        root = self.work / "runs" / name
        if fresh:
            shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        env = {
            "HEALTH_RAW_DIR": str(raw_dir or self.raw_dir),
            "HEALTH_WAREHOUSE": str(root / "warehouse.duckdb"),
            "HEALTH_EXPORT_DIR": str(root / "exports"),
            "HEALTH_LANDING_DIR": str(root / "landing"),
            "HEALTH_PARTITIONS_START": self.scale.spec().start.isoformat(),
            "HEALTH_ENGINE": engine,
            "HEALTH_LAKE_DIR": str(root / "lake"),
        }
        # DuckDB spills beside the database file unless told otherwise.
        return self.task({"task": "pipeline", "via": via, "first": first.isoformat(), "last": last.isoformat(),
                          **({"only": only} if only else {})}, env, spill_dir=root / "warehouse.duckdb.tmp")

    def raw_data(self, raw_dir: Path, accounts: int | None = None, days: int | None = None) -> dict:
        """The scale's raw data, generated in a child process: a parent grown by the generator
        would pass its own resident size on to every child's peak-RSS reading."""
        log(f"raw data in {raw_dir} (generated unless already there)")
        return self.task({"task": "generate", "scale": self.scale.name, "accounts": accounts, "days": days,
                          "out": str(raw_dir)})["counts"]

    def warehouse(self, name: str) -> str:
        return str(self.work / "runs" / name / "warehouse.duckdb")


def alternate(variants: dict, reps: int, log_as: str) -> dict[str, list[dict]]:
    """Run each variant `reps` times, alternating A B, B A, A B ... so drift hits both alike."""
    results = {name: [] for name in variants}
    names = list(variants)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            result = variants[name]()
            results[name].append(result)
            log(f"{log_as} rep {rep + 1}/{reps} {name}: {result['seconds']:.2f} s"
                + (f", peak {result['peak_rss_mb']:.0f} MB" if result.get("peak_rss_mb") else ""))
    return results


def median(results: list[dict], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in results)


def summary(results: list[dict], key: str = "seconds") -> dict:
    values = [r[key] for r in results]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def scenario(number: int, title: str, compare: str, target: str, met: bool | None, measured: dict,
             figures: dict, note: str = "") -> dict:
    return {"number": number, "title": title, "compare": compare, "target": target, "met": met,
            "measured": measured, "figures": figures, "note": note}


def setup(bench: Bench) -> dict:
    """Warehouses with history before the last day: all of it, its last `window_history` days (when
    the whole history is longer) and its last `short_history` days."""
    backfills = {}
    for name, days in history_warehouses(bench.scale).items():
        log(f"setup: backfilling days {bench.scale.days - days}..{bench.scale.days - 1} ({name})")
        backfills[f"{name}_backfill"] = bench.pipeline(
            name, bench.day(bench.scale.days - days), bench.day(bench.scale.days - 1), fresh=True)
    return backfills


def history_warehouses(scale: Scale) -> dict[str, int]:
    """Scenario 1's warehouses and the days of history each holds before the last day."""
    full = scale.days - 1
    middle = {"history_windows": scale.window_history} if full > scale.window_history else {}
    return {"history_full": full, **middle, "history_short": scale.short_history}


def scenario_history(bench: Bench) -> dict:
    """The last day's daily run after each history. The issue's ratio compares the whole history with
    the short one; against the history that fills the windows, it shows growth with history alone,
    since after the short one the 90-day windows hold only its days."""
    n = bench.scale.days
    last = bench.day(n)
    daily_run = {f"after_{name.removeprefix('history_')}_history": lambda name=name: bench.pipeline(name, last, last)
                 for name in history_warehouses(bench.scale)}
    runs = alternate(daily_run, bench.reps, "1 history")
    full, short = median(runs["after_full_history"]), median(runs["after_short_history"])
    figures = {"ratio": ratio(full, short)}
    if "after_windows_history" in runs:
        figures["ratio_to_full_windows"] = ratio(full, median(runs["after_windows_history"]))
    return scenario(
        1, "History independence",
        f"daily run of day {n} after {n - 1} days of history vs after {bench.scale.short_history} days (same day, "
        "same data)" + (f"; and vs after {bench.scale.window_history} days, which fill every window"
                        if "ratio_to_full_windows" in figures else ""),
        "ratio <= 1.1", figures["ratio"] <= 1.1,
        {k: summary(v) for k, v in runs.items()}, figures,
    )


def scenario_backfill(bench: Bench) -> tuple[dict, dict, dict]:
    """Scenarios 2, 4 and 5 share one alternation: backfill, the daily run, and the GROUP BY floor."""
    n = bench.scale.days
    first, last = bench.day(1), bench.day(n)
    events_location = str(bench.raw_dir / "all_events" / "**" / "*.parquet")
    runs = alternate({
        "backfill": lambda: bench.pipeline("backfill", first, last, fresh=True),
        "daily": lambda: bench.pipeline("history_full", last, last),
        "group_by_floor": lambda: bench.task(
            {"task": "floor", "first": first.isoformat(), "last": last.isoformat(),
             "events_location": events_location}),
    }, bench.backfill_reps, "2/4/5 backfill")
    backfill, daily, floor = (median(runs[k]) for k in ("backfill", "daily", "group_by_floor"))
    events = runs["group_by_floor"][0]["events"]
    measured = {k: summary(v) for k, v in runs.items()}
    s2 = scenario(
        2, "Single-run backfill", f"backfill of all {n} days in one run vs one daily run",
        "ratio <= 12", ratio(backfill, daily) <= 12,
        {k: measured[k] for k in ("backfill", "daily")},
        # The peer: one run per day, each its own process, as a backfill of single-day runs would
        # launch. Estimated from the measured daily run's wall time (process start included).
        {"ratio": ratio(backfill, daily), "backfill_seconds_per_day": backfill / n,
         "run_per_day_estimate_seconds": n * median(runs["daily"], "wall"),
         "speedup_vs_run_per_day": ratio(n * median(runs["daily"], "wall"), median(runs["backfill"], "wall"))},
    )
    backfill_rate, floor_rate = events / backfill, events / floor
    s4 = scenario(
        4, "Versus the physical limit",
        f"backfill events per second vs DuckDB's GROUP BY (user, day, event) over the same {events:,} raw events",
        "ratio >= 0.08", ratio(backfill_rate, floor_rate) >= 0.08,
        {k: measured[k] for k in ("backfill", "group_by_floor")},
        {"events": events, "backfill_events_per_second": backfill_rate,
         "floor_events_per_second": floor_rate, "ratio": ratio(backfill_rate, floor_rate)},
    )
    peak = max(r["peak_rss_mb"] for r in runs["backfill"])
    s5 = scenario(
        5, "Memory", f"peak RSS of the whole {n}-day backfill run (one process: Python, Dagster and DuckDB)",
        "<= 3 GB", peak <= 3 * 1024,
        {k: summary(v, "peak_rss_mb") for k, v in runs.items()},
        {"backfill_peak_rss_mb": peak, "daily_peak_rss_mb": max(r["peak_rss_mb"] for r in runs["daily"]),
         "backfill_peak_spill_mb": max(r["peak_spill_mb"] for r in runs["backfill"]),
         "duckdb_settings": bench.duckdb_env or "DuckDB defaults"},
    )
    return s2, s4, s5


def scenario_seed_and_overhead(bench: Bench) -> tuple[dict, dict]:
    """Scenarios 3 and 6 share one alternation: the daily run through Dagster, run directly, and the seed view."""
    last = bench.day(bench.scale.days)
    runs = alternate({
        "dagster_run": lambda: bench.pipeline("history_full", last, last),
        "direct": lambda: bench.pipeline("history_full", last, last, via="direct"),
        "seed_view": lambda: bench.task({"task": "seed", "raw_dir": str(bench.raw_dir), "day": last.isoformat()}),
    }, bench.reps, "3/6 daily")
    values = bench.task({"task": "verify", "raw_dir": str(bench.raw_dir), "day": last.isoformat(),
                         "warehouse": bench.warehouse("history_full")})
    startup = [bench.task({"task": "startup"}) for _ in range(bench.reps)]
    dagster, direct, seed_view = (median(runs[k]) for k in ("dagster_run", "direct", "seed_view"))
    agree = all(values[t]["unmatched"] == 0 and values[t]["differing"] == 0
                for t in ("account_metrics", "contact_metrics"))
    measured = {k: summary(v) for k, v in runs.items()}
    steps = {step: statistics.median(r["steps"][step] for r in runs["direct"]) for step in runs["direct"][0]["steps"]}
    s3 = scenario(
        3, "Versus the seed approach",
        f"one daily run (day {bench.scale.days}) vs the seed view recomputing the same day from raw events",
        ">= 5x in compute, >= 2x end to end, identical values",
        ratio(seed_view, direct) >= 5 and ratio(seed_view, dagster) >= 2 and agree,
        {k: measured[k] for k in ("direct", "dagster_run", "seed_view")},
        {"compute_speedup": ratio(seed_view, direct), "end_to_end_speedup": ratio(seed_view, dagster),
         "process_speedup": ratio(median(runs["seed_view"], "wall"), median(runs["dagster_run"], "wall")),
         "values_identical": agree, "comparison": values, "direct_steps": steps},
    )
    s6 = scenario(
        6, "Dagster overhead",
        "the daily run as a Dagster run (in-process executor) vs the same asset functions called directly",
        "report the ratio and the fixed cost", None,
        {**{k: measured[k] for k in ("dagster_run", "direct")}, "process_startup": summary(startup)},
        {"ratio": ratio(dagster, direct), "fixed_cost_seconds": dagster - direct,
         "process_startup_seconds": median(startup)},
    )
    return s3, s6


def scenario_backtest(bench: Bench) -> dict:
    """The backtest over the whole history, beside the daily run it ends."""
    last = bench.day(bench.scale.days)
    env = {"HEALTH_RAW_DIR": str(bench.raw_dir), "HEALTH_WAREHOUSE": bench.warehouse("history_full"),
           "HEALTH_EXPORT_DIR": str(bench.work / "runs" / "history_full" / "exports"),
           "HEALTH_PARTITIONS_START": bench.scale.spec().start.isoformat()}
    def backtest(recompute: bool) -> dict:
        return bench.task({"task": "pipeline", "via": "direct", "first": last.isoformat(), "last": last.isoformat(),
                           "only": ["score_backtest"], "recompute_backtest": recompute}, env)

    runs = alternate({
        "backtest_recomputed": lambda: backtest(True),  # as when outcomes or their paired scores changed
        "backtest_unchanged": lambda: backtest(False),  # most daily runs: the same inputs, no bootstrap
        "daily_direct": lambda: bench.pipeline("history_full", last, last, via="direct"),
    }, bench.reps, "7 backtest")
    recomputed, unchanged, daily = (median(runs[k]) for k in ("backtest_recomputed", "backtest_unchanged",
                                                              "daily_direct"))
    outcomes = bench.task({"task": "outcomes", "warehouse": bench.warehouse("history_full")})
    return scenario(
        7, "Backtest", f"score_backtest over {bench.scale.days} days of history vs the daily run that ends with it",
        "report the ratio", None, {k: summary(v) for k, v in runs.items()},
        {"ratio": ratio(recomputed, daily), "unchanged_ratio": ratio(unchanged, daily),
         "backtest_seconds": recomputed, "unchanged_seconds": unchanged, **outcomes},
    )


REPORT_SECONDS_TARGET, REPORT_MB_TARGET = 3, 50  # the build of one day's site at M


def scenario_report(bench: Bench) -> dict:
    """The morning report of the last day, built from the full history, beside the daily run."""
    last = bench.day(bench.scale.days)
    exports = bench.work / "runs" / "history_full" / "exports"

    def report() -> dict:
        return bench.task({"task": "report", "warehouse": bench.warehouse("history_full"),
                           "export_dir": str(exports), "day": last.isoformat()})

    daily = lambda: bench.pipeline("history_full", last, last, via="direct")  # noqa: E731
    daily()  # the last day scored, whichever scenarios ran before
    runs = alternate({"report": report, "daily_direct": daily}, bench.reps, "8 report")
    build = median(runs["report"], "build_seconds")
    size_mb, pages = runs["report"][-1]["size_mb"], runs["report"][-1]["pages"]
    return scenario(
        8, "Morning report", "one day's site (every owner, account and metric page) vs the daily run that builds it",
        f"<= {REPORT_SECONDS_TARGET} s and < {REPORT_MB_TARGET} MB",
        build <= REPORT_SECONDS_TARGET and size_mb < REPORT_MB_TARGET, {k: summary(v) for k, v in runs.items()},
        {"ratio": ratio(median(runs["report"]), median(runs["daily_direct"])), "build_seconds": build,
         "size_mb": size_mb, "pages": pages,
         "peak_rss_mb": max(r["peak_rss_mb"] for r in runs["report"])},
    )


RAW_STAGE_DAYS = 10
RAW_STAGE_RATIO_TARGET = 3


def scenario_raw_stage(bench: Bench) -> dict:
    """The raw stage alone over its first days, beside a bare GROUP BY event_id over the same
    raw files: how much the stage costs beyond the exact deduplication it cannot avoid."""
    first, last = bench.day(1), bench.day(min(RAW_STAGE_DAYS, bench.scale.days))
    events_location = str(bench.raw_dir / "all_events" / "**" / "*.parquet")
    runs = alternate({
        "raw_stage": lambda: bench.pipeline("raw_stage", first, last, via="direct", fresh=True,
                                            only=["raw_activity"]),
        "event_id_floor": lambda: bench.task(
            {"task": "floor", "kind": "event_id", "first": first.isoformat(), "last": last.isoformat(),
             "events_location": events_location}),
    }, bench.reps, "10 raw stage")
    raw, floor = median(runs["raw_stage"]), median(runs["event_id_floor"])
    return scenario(
        10, "Raw stage vs exact deduplication",
        f"raw_activity over days 1-{(last - first).days + 1} (direct, a fresh warehouse) vs a bare GROUP BY "
        "event_id over the same raw files",
        f"ratio <= {RAW_STAGE_RATIO_TARGET}", ratio(raw, floor) <= RAW_STAGE_RATIO_TARGET,
        {k: summary(v) for k, v in runs.items()},
        {"ratio": ratio(raw, floor), "days": (last - first).days + 1, "events": runs["event_id_floor"][0]["events"],
         "peak_rss_mb": max(r["peak_rss_mb"] for r in runs["raw_stage"])},
    )


SYNC_DAY_SECONDS_TARGET = 10
# Issue targets for Heap's S3 delivery against the same data as a parquet folder: the raw stage.
DELIVERY_DAILY_RATIO_TARGET = 1.5
DELIVERY_BACKFILL_RATIO_TARGET = 1.3
LAST_SCENARIO = 12
OPT_IN_SCENARIOS = {12}  # run only when asked for: it needs the spark extra and Java
HISTORY_SCENARIOS = set(range(1, 10))  # the scenarios that read setup()'s warehouses


def scenario_postgres(bench: Bench) -> dict:
    """postgres_sync of the last day into a local PostgreSQL holding the history, beside the daily
    run; and the whole history synced at once, as a backfill would."""
    from health_pipeline_tests.postgres_server import start_server

    server = start_server()
    if server is None:
        return scenario(9, "PostgreSQL sync", "skipped: PostgreSQL is not installed (apt-get install postgresql)",
                        f"one day < {SYNC_DAY_SECONDS_TARGET} s", None, {}, {"skipped": True})
    first, last = bench.day(1), bench.day(bench.scale.days)
    try:
        def sync(start: dt.date) -> dict:
            return bench.task({"task": "postgres_sync", "url": server.url(),
                               "warehouse": bench.warehouse("history_full"),
                               "first": start.isoformat(), "last": last.isoformat()})

        backfill = sync(first)  # every day at once: what a backfill's sync does, and the history the day syncs into
        runs = alternate({
            "sync_day": lambda: sync(last),
            "daily_direct": lambda: bench.pipeline("history_full", last, last, via="direct"),
        }, bench.reps, "9 postgres")
    finally:
        server.stop()
    day = median(runs["sync_day"])
    counts = backfill["counts"]
    return scenario(
        9, "PostgreSQL sync", f"one day's sync into a table holding {bench.scale.days} days vs the daily run",
        f"one day < {SYNC_DAY_SECONDS_TARGET} s", day < SYNC_DAY_SECONDS_TARGET,
        {k: summary(v) for k, v in runs.items()},
        {"ratio": ratio(day, median(runs["daily_direct"])), "sync_day_seconds": day,
         "backfill_sync_seconds": backfill["seconds"], "day_rows": runs["sync_day"][-1]["counts"],
         "backfill_rows": {table: figures["rows"] for table, figures in counts.items()}},
    )


def scenario_heap_delivery(bench: Bench) -> list[dict]:
    """The raw stage reading Heap's S3 delivery (a local copy, Avro, a dump a day) against the same
    data as a parquet folder: a backfill of every day but the last into fresh warehouses (the
    delivery's landing fresh too), then the last day's run, which lands that day's dump first.
    Each run's seconds include landing; the Avro decoding's own share is the source's
    `avro_seconds`. The last dump's manifest is held back during the backfill, as the dump a
    nightly delivery adds."""
    delivery = bench.work / "delivery"
    log(f"11: the raw data as Heap's S3 delivery in {delivery} (written unless already there)")
    written = bench.task({"task": "delivery", "raw_dir": str(bench.raw_dir), "out": str(delivery)})["counts"]
    last_manifest = delivery / "manifests" / f"sync_{written['dumps']}.json"
    first, before_last, last = bench.day(1), bench.day(bench.scale.days - 1), bench.day(bench.scale.days)
    held_back = last_manifest.with_suffix(".held")
    last_manifest.rename(held_back)
    try:
        backfill = alternate({
            "heap_s3": lambda: bench.pipeline("delivery", first, before_last, via="direct", fresh=True,
                                              raw_dir=delivery, only=["raw_activity"]),
            "parquet": lambda: bench.pipeline("folder", first, before_last, via="direct", fresh=True,
                                              only=["raw_activity"]),
        }, bench.backfill_reps, "11 raw-stage backfill")
    finally:
        held_back.rename(last_manifest)
    landing = bench.work / "runs" / "delivery" / "landing"
    before = {path for path in landing.rglob("*") if path.is_file()}
    state = (landing / "_landing.json").read_text()

    def daily_delivery() -> dict:
        # The landing as it was before the last dump: its files and state (outside the clock).
        for path in {p for p in landing.rglob("*") if p.is_file()} - before:
            path.unlink()
        (landing / "_landing.json").write_text(state)
        return bench.pipeline("delivery", last, last, via="direct", raw_dir=delivery, only=["raw_activity"])

    daily = alternate({
        "heap_s3": daily_delivery,
        "parquet": lambda: bench.pipeline("folder", last, last, via="direct", only=["raw_activity"]),
    }, bench.reps, "11 raw-stage daily")
    results = []
    for number_title, runs, target in (("backfill", backfill, DELIVERY_BACKFILL_RATIO_TARGET),
                                       ("daily", daily, DELIVERY_DAILY_RATIO_TARGET)):
        a, b = median(runs["heap_s3"]), median(runs["parquet"])
        avro = statistics.median(r["source"].get("avro_seconds", 0.0) for r in runs["heap_s3"])
        days = bench.scale.days - 1 if number_title == "backfill" else 1
        results.append(scenario(
            11, f"Heap S3 delivery vs parquet: raw stage, {number_title}",
            f"raw_activity reading Heap's S3 delivery (local copy, Avro; landing included) vs the same data as "
            f"parquet, {days} day{'s' if days > 1 else ''} (direct)",
            f"ratio <= {target}", ratio(a, b) <= target, {k: summary(v) for k, v in runs.items()},
            {"ratio": ratio(a, b), "days": days, "avro_seconds": avro, "avro_share": ratio(avro, a),
             "dumps": written["dumps"]}))
    return results


# A day's events the paper estimate sizes a cluster for, and the time it has to extract them in.
BILLION = 1_000_000_000
ESTIMATE_HOURS = 1


def scenario_engines(bench: Bench) -> dict:
    """The event stage (raw_activity) over the first days on Spark local (every core of this
    machine) and on DuckDB, each in a fresh warehouse (and lake): events per second per core for
    both; Spark's fixed start-up cost (a local session started and answering one query, measured
    on its own), which its run includes and its rate leaves out; and, from that rate, the cores a
    billion events a day would need to be extracted in an hour, on paper (a cluster's network,
    object store and skew are not in it)."""
    first, last = bench.day(1), bench.day(min(RAW_STAGE_DAYS, bench.scale.days))
    events = sum(_events_on(bench.raw_dir, first + dt.timedelta(days=n)) for n in range((last - first).days + 1))
    runs = alternate({
        "duckdb": lambda: bench.pipeline("engine_duckdb", first, last, via="direct", fresh=True,
                                         only=["raw_activity"]),
        "spark": lambda: bench.pipeline("engine_spark", first, last, via="direct", fresh=True,
                                        only=["raw_activity"], engine="spark"),
    }, bench.reps, "12 event stage")
    startup = [bench.task({"task": "spark_startup"}) for _ in range(bench.reps)]
    cores = os.cpu_count() or 1
    duck, spark, fixed = median(runs["duckdb"]), median(runs["spark"]), median(startup)
    duck_rate, spark_rate = events / duck / cores, events / max(spark - fixed, 1e-9) / cores
    return scenario(
        12, "Event stage: Spark local vs DuckDB",
        f"raw_activity over days 1-{(last - first).days + 1} (direct, fresh) with HEALTH_ENGINE=spark (local, "
        f"{cores} cores) vs duckdb", "reported", None,
        {**{k: summary(v) for k, v in runs.items()}, "spark_startup": summary(startup)},
        {"events": events, "days": (last - first).days + 1, "cores": cores, "ratio": ratio(spark, duck),
         "duckdb_events_per_second_per_core": duck_rate, "spark_events_per_second_per_core": spark_rate,
         "spark_startup_seconds": fixed,
         "spark_peak_rss_mb": max(r["peak_rss_mb"] for r in runs["spark"]),
         "cores_for_a_billion_a_day": BILLION / (spark_rate * ESTIMATE_HOURS * 3600)},
    )


def scaling_curve(bench: Bench, full_backfill: dict) -> dict:
    """Daily-run time against events a day, and backfill time against days of history."""
    daily = []
    for accounts in CURVE_ACCOUNTS:
        spec = bench.scale.spec(accounts=accounts, days=CURVE_DAYS)
        raw_dir = BENCH_DIR / "curve" / f"{accounts}_accounts" / "raw"
        counts = bench.raw_data(raw_dir, accounts=accounts, days=CURVE_DAYS)
        day = spec.start + dt.timedelta(days=CURVE_DAYS - 1)
        name = f"curve_{accounts}"
        log(f"curve: {accounts} accounts, backfilling {CURVE_DAYS - 1} days of history")
        bench.pipeline(name, spec.start, day - dt.timedelta(days=1), fresh=True, raw_dir=raw_dir)
        daily.append({"accounts": accounts, "users": counts["users"], "events_per_day": _events_on(raw_dir, day),
                      "run": lambda name=name, day=day, raw=raw_dir: bench.pipeline(name, day, day, raw_dir=raw)})
    runs = alternate({point["accounts"]: point.pop("run") for point in daily}, bench.reps, "curve daily")
    for point in daily:
        point.update(summary(runs[point["accounts"]]))
    backfills = alternate({
        days: (lambda days=days: bench.pipeline(f"curve_backfill_{days}", bench.day(1), bench.day(days), fresh=True))
        for days in CURVE_BACKFILL_DAYS
    }, bench.backfill_reps, "curve backfill")
    backfill = [{"days": days, **summary(runs_)} for days, runs_ in backfills.items()]
    backfill.append({"days": bench.scale.days, **full_backfill})  # scenario 2's backfill
    return {"history_days": CURVE_DAYS - 1, "daily": daily, "backfill": backfill}


def _events_on(raw_dir: Path, day: dt.date) -> int:
    import duckdb

    return duckdb.sql("SELECT count(*) FROM read_parquet(?)", params=[str(raw_dir / "all_events" / f"{day}.parquet")]
                      ).fetchall()[0][0]


def machine() -> dict:
    import dagster
    import duckdb

    meminfo = Path("/proc/meminfo").read_text().split("\n") if Path("/proc/meminfo").exists() else []
    total_kb = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), 0)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().split("\n")
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {
        "cores": os.cpu_count(), "memory_gb": round(total_kb / 1024 / 1024, 1), "cpu": cpu,
        "platform": platform.platform(), "python": platform.python_version(),
        "duckdb": duckdb.__version__, "dagster": dagster.__version__,
        "load_average_at_start": os.getloadavg(),
    }


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def _verdict(met: bool | None) -> str:
    return "reported" if met is None else ("met" if met else "**missed**")


def markdown(report: dict) -> str:
    """The results as a markdown table, with the machine, the scale and the versions."""
    m, data, scale = report["machine"], report["data"], report["scale"]
    settings = ", ".join(f"{k}={v}" for k, v in report["duckdb_settings"].items()) or "DuckDB defaults"
    lines = [
        f"# Benchmark results, scale {scale['name']}",
        "",
        f"- **Scale {scale['name']}**: {scale['note']}. {data['accounts']:,} accounts, {data['users']:,} users, "
        f"{scale['days']} days, {data['events']:,} events ({data['events'] / scale['days']:,.0f} a day) "
        f"and {data['sessions']:,} sessions, plus about 1 % duplicate rows.",
        f"- **Machine**: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB memory, {m['platform']}. "
        f"Load average at start {m['load_average_at_start'][0]:.1f}, at end {m['load_average_at_end'][0]:.1f} "
        "(the machine is shared, so A and B are alternated and compared as ratios).",
        f"- **Versions**: DuckDB {m['duckdb']}, Dagster {m['dagster']}, Python {m['python']}.",
        f"- **Runs**: medians of {report['reps']} repetitions ({report['backfill_reps']} for the full backfill), "
        f"each a fresh process; DuckDB settings: {settings}. Started {report['started_at']}, "
        f"took {report['total_seconds'] / 60:.0f} min.",
        "",
        "| # | scenario | A | B | result | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in report["scenarios"]:
        f, meas = s["figures"], s["measured"]
        if s["number"] == 1:
            a, b = meas["after_full_history"], meas["after_short_history"]
            windows = meas.get("after_windows_history")
            row = (f"daily run after {scale['days'] - 1} days: {_s(a['median'])}",
                   f"after {scale['short_history']} days: {_s(b['median'])}"
                   + (f"; after {scale['window_history']} days (every window full): {_s(windows['median'])}"
                      if windows else ""),
                   f"{f['ratio']:.2f}x"
                   + (f"; {f['ratio_to_full_windows']:.2f}x against full windows" if windows else ""))
        elif s["number"] == 2:
            row = (f"backfill {scale['days']} days: {_s(meas['backfill']['median'])} "
                   f"({f['backfill_seconds_per_day']:.2f} s a day)",
                   f"daily run: {_s(meas['daily']['median'])}",
                   f"{f['ratio']:.1f}x; {f['speedup_vs_run_per_day']:.1f}x faster than {scale['days']} "
                   f"one-day runs (estimated: {_s(f['run_per_day_estimate_seconds'])})")
        elif s["number"] == 3:
            row = (f"pipeline daily run: {_s(meas['direct']['median'])} compute, "
                   f"{_s(meas['dagster_run']['median'])} as a Dagster run",
                   f"seed view: {_s(meas['seed_view']['median'])}",
                   f"{f['compute_speedup']:.1f}x faster in compute, {f['end_to_end_speedup']:.1f}x end to end; "
                   f"values {'identical' if f['values_identical'] else '**differ**'}")
        elif s["number"] == 4:
            row = (f"backfill: {f['backfill_events_per_second'] / 1e6:.2f} M events/s",
                   f"GROUP BY floor: {f['floor_events_per_second'] / 1e6:.2f} M events/s "
                   f"({_s(meas['group_by_floor']['median'])})", f"{f['ratio']:.2f}x")
        elif s["number"] == 5:
            spill = f.get("backfill_peak_spill_mb")  # results before it was measured lack it
            row = (f"backfill peak RSS: {f['backfill_peak_rss_mb'] / 1024:.2f} GB"
                   + (f", peak spill on disk {spill / 1024:.2f} GB" if spill is not None else ""),
                   f"daily run: {f['daily_peak_rss_mb'] / 1024:.2f} GB", f"{f['backfill_peak_rss_mb'] / 1024:.2f} GB")
        elif s["number"] == 7:
            row = (f"score_backtest recomputed: {_s(meas['backtest_recomputed']['median'])}, inputs unchanged: "
                   f"{_s(meas['backtest_unchanged']['median'])} ({f['outcomes']:,} outcomes, "
                   f"{f['pairs']:,} outcome-lead pairs)",
                   f"daily run (direct, backtest included): {_s(meas['daily_direct']['median'])}",
                   f"{f['ratio']:.2f}x recomputed, {f['unchanged_ratio']:.2f}x unchanged")
        elif s["number"] == 9 and f.get("skipped"):
            row = ("skipped", "PostgreSQL is not installed", "–")
        elif s["number"] == 9:
            rows = f["day_rows"]
            row = (f"one day's sync: {_s(f['sync_day_seconds'])} ({rows['account_health']['rows']:,} accounts, "
                   f"{rows['contact_usage']['rows']:,} contacts); all {scale['days']} days at once: "
                   f"{_s(f['backfill_sync_seconds'])} ({f['backfill_rows']['contact_usage']:,} contact rows)",
                   f"daily run (direct): {_s(meas['daily_direct']['median'])}", f"{f['ratio']:.2f}x")
        elif s["number"] == 10:
            row = (f"raw_activity, {f['days']} days: {_s(meas['raw_stage']['median'])}",
                   f"GROUP BY event_id: {_s(meas['event_id_floor']['median'])} ({f['events']:,} events)",
                   f"{f['ratio']:.1f}x")
        elif s["number"] == 11:
            row = (f"Heap S3 delivery, {f['days']} day{'s' if f['days'] > 1 else ''}: "
                   f"{_s(meas['heap_s3']['median'])} (Avro decoding {_s(f['avro_seconds'])}, "
                   f"{f['avro_share']:.0%})",
                   f"parquet: {_s(meas['parquet']['median'])}", f"{f['ratio']:.2f}x")
        elif s["number"] == 12:
            row = (f"Spark: {_s(meas['spark']['median'])} ({f['spark_events_per_second_per_core']:,.0f} events/s per "
                   f"core past its start-up of {_s(f['spark_startup_seconds'])})",
                   f"DuckDB: {_s(meas['duckdb']['median'])} ({f['duckdb_events_per_second_per_core']:,.0f} events/s "
                   f"per core), {f['events']:,} events",
                   f"{f['ratio']:.1f}x; a billion events a day in {ESTIMATE_HOURS} h: about "
                   f"{f['cores_for_a_billion_a_day']:,.0f} Spark cores on paper")
        elif s["number"] == 8:
            row = (f"report: {_s(f['build_seconds'])} to build {f['pages']:,} pages, {f['size_mb']:.1f} MB "
                   f"({_s(meas['report']['median'])} with the process start; peak RSS "
                   f"{f['peak_rss_mb'] / 1024:.2f} GB)",
                   f"daily run (direct, report included): {_s(meas['daily_direct']['median'])}",
                   f"{f['ratio']:.2f}x")
        else:
            row = (f"Dagster run: {_s(meas['dagster_run']['median'])}", f"direct: {_s(meas['direct']['median'])}",
                   f"{f['ratio']:.2f}x, fixed cost {f['fixed_cost_seconds']:.2f} s "
                   f"(+ {f['process_startup_seconds']:.1f} s to start Python and load the code)")
        lines.append(f"| {s['number']} | {s['title']} | {row[0]} | {row[1]} | {row[2]} | {s['target']} | "
                     f"{_verdict(s['met'])} |")
    s3 = next((s["figures"] for s in report["scenarios"] if s["number"] == 3), None)
    if s3 is None:
        return "\n".join(lines) + "\n"
    lines += ["", "Where the daily run's compute goes (scenario 3, direct, median seconds per stage): "
              + ", ".join(f"{k} {v:.2f}" for k, v in s3["direct_steps"].items()) + ".", "",
              "Seed baseline versus pipeline, rows compared on the snapshot date: "
              + "; ".join(f"{t}: {c['rows']:,} rows, {c['unmatched']} unmatched, {c['differing']} differing"
                          for t, c in s3["comparison"].items() if isinstance(c, dict)) + "."]
    if "curve" in report:
        curve = report["curve"]
        lines += ["", f"## Scaling curve ({curve['history_days']} days of history before the measured day)", "",
                  "| accounts | users | events that day | daily run (median) |", "|---|---|---|---|"]
        lines += [f"| {p['accounts']:,} | {p['users']:,} | {p['events_per_day']:,} | {_s(p['median'])} |"
                  for p in curve["daily"]]
        lines += ["", "| backfill days | time (median) |", "|---|---|"]
        lines += [f"| {p['days']} | {_s(p['median'])} |" for p in curve["backfill"]]
        if report.get("plot"):
            lines += ["", f"Plot: `{report['plot']}`."]
    return "\n".join(lines) + "\n"


def draw_curve(curve: dict, path: Path, scale_name: str) -> str | None:
    """Draw the scaling curve as a PNG; None (with a note) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[bench]'): skipping the plot")
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    daily = curve["daily"]
    x = [p["events_per_day"] / 1e6 for p in daily]
    left.plot(x, [p["median"] for p in daily], "o-", label="daily run (median)")
    left.fill_between(x, [p["min"] for p in daily], [p["max"] for p in daily], alpha=0.2, label="min..max")
    left.set(xscale="log", ylim=(0, None), xlabel="events that day (millions, log scale)", ylabel="seconds",
             title=f"Daily run vs volume ({curve['history_days']} days of history)")
    for axis in (left.xaxis,):
        axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.grid(True, which="both", alpha=0.3)
    left.legend()
    backfill = curve["backfill"]
    days = [p["days"] for p in backfill]
    right.plot(days, [p["median"] for p in backfill], "o-", color="tab:orange", label="backfill in one run (median)")
    per_day = backfill[-1]["median"] / days[-1]
    right.plot([0, days[-1]], [0, per_day * days[-1]], ":", color="grey", label="linear in days")
    right.set(xlabel="days backfilled (~1M events a day)", ylabel="seconds", title="Backfill vs range")
    right.grid(True, alpha=0.3)
    right.legend()
    fig.suptitle(f"health_pipeline scaling, scale {scale_name}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=SCALES, default="S")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each A/B pair (default 3)")
    parser.add_argument("--backfill-reps", type=int, help="repetitions of the full backfill (default: --reps)")
    parser.add_argument("--curve", action=argparse.BooleanOptionalAction, default=None,
                        help="measure the scaling curve (default: only at M)")
    parser.add_argument("--memory-limit", default="2GB",
                        help="HEALTH_DUCKDB_MEMORY_LIMIT for every run (default %(default)s; 'none' for DuckDB's own)")
    parser.add_argument("--threads", help="HEALTH_DUCKDB_THREADS for every run (default: DuckDB's, one per core)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where results go (default %(default)s)")
    parser.add_argument("--work", type=Path, help="data and warehouses (default data/bench/<scale>)")
    parser.add_argument("--plot", type=Path,
                        help=f"the scaling plot (default {PLOT_PATH.relative_to(PROJECT_ROOT)} at M)")
    parser.add_argument("--scenarios", type=int, nargs="+", choices=range(1, LAST_SCENARIO + 1), metavar="N",
                        help="run only these scenarios (default: all but 12, the Spark engine, which needs the spark "
                             "extra and Java); results go to <scale>-scenarios-N.json")
    parser.add_argument("--redraw", action="store_true",
                        help="only rewrite the markdown table and the plot from the saved JSON results")
    args = parser.parse_args(argv)

    scale = SCALES[args.scale]
    if args.redraw:
        report = json.loads((args.out / f"{scale.name}.json").read_text())
        if "curve" in report:
            report["plot"] = draw_curve(report["curve"], args.plot or PLOT_PATH, scale.name)
        (args.out / f"{scale.name}.md").write_text(markdown(report))
        return 0
    duckdb_env = {}
    if args.memory_limit.lower() != "none":
        duckdb_env["HEALTH_DUCKDB_MEMORY_LIMIT"] = args.memory_limit
    if args.threads:
        duckdb_env["HEALTH_DUCKDB_THREADS"] = args.threads
    bench = Bench(scale, args.work or BENCH_DIR / scale.name, args.reps, args.backfill_reps or args.reps, duckdb_env)
    name = scale.name
    started = time.perf_counter()
    report = {"scale": {"name": scale.name, "accounts": scale.accounts, "days": scale.days,
                        "short_history": scale.short_history,
                        "window_history": scale.window_history, "note": scale.note},
              "machine": machine(), "duckdb_settings": duckdb_env,
              "reps": bench.reps, "backfill_reps": bench.backfill_reps,
              "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    report["data"] = bench.raw_data(bench.raw_dir)
    wanted = set(args.scenarios or set(range(1, LAST_SCENARIO + 1)) - OPT_IN_SCENARIOS)
    if wanted & HISTORY_SCENARIOS:
        report["setup"] = setup(bench)
    scenarios = []
    if 1 in wanted:
        scenarios.append(scenario_history(bench))
    if wanted & {2, 4, 5}:
        scenarios += scenario_backfill(bench)
    if wanted & {3, 6}:
        scenarios += scenario_seed_and_overhead(bench)
    if 7 in wanted:
        scenarios.append(scenario_backtest(bench))
    if 8 in wanted:
        scenarios.append(scenario_report(bench))
    if 9 in wanted:
        scenarios.append(scenario_postgres(bench))
    if 10 in wanted:
        scenarios.append(scenario_raw_stage(bench))
    if 11 in wanted:
        scenarios += scenario_heap_delivery(bench)
    if 12 in wanted:
        scenarios.append(scenario_engines(bench))
    report["scenarios"] = sorted((s for s in scenarios if s["number"] in wanted), key=lambda s: s["number"])
    if args.scenarios:  # a partial run keeps the full run's results file
        name = f"{scale.name}-scenarios-{'-'.join(map(str, sorted(wanted)))}"
    if not args.scenarios and (args.curve if args.curve is not None else scale.name == "M"):
        s2 = next(s for s in report["scenarios"] if s["number"] == 2)
        report["curve"] = scaling_curve(bench, s2["measured"]["backfill"])
        plot = args.plot or PLOT_PATH
        report["plot"] = draw_curve(report["curve"], plot, scale.name)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    report["total_seconds"] = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (args.out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    log(f"wrote {args.out / name}.json and .md in {report['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
