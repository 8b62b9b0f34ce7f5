"""Run `health-pipeline run`, stopping dead at one chosen point so a test can SIGKILL it there.

    python -m health_pipeline_tests.crash_driver POINT START END
    python -m health_pipeline_tests.crash_driver POINT -- COMMAND ARG...

The second form runs another command of the venv in this process instead, such as `dagster asset
materialize ...` or `dg launch ...`, which execute their run in the process that launched it.

POINT is one of:
  connect:<n>     just before the n-th warehouse connection opens: a step that holds its pool
                  slot and not (yet) the warehouse file's lock
  sql:<text>:<n>  just after the n-th warehouse statement containing <text> (1-based), which
                  can be inside a swap's transaction (after its DELETE, before its COMMIT)
  tmp:<n>         when the n-th sync temp file is fully written but not yet renamed into place
  renamed:<n>     just after the n-th sync file is renamed into place
  sample:<n>      while generating the sample, after n days of it have been written
  pgcopy:<n>      just after the n-th block of rows is sent to PostgreSQL by postgres_sync's COPY,
                  inside its transaction

At the point it prints "REACHED <point>" and sleeps, holding whatever it holds (locks, open
transaction, temp file), until it is killed; with CRASH_DRIVER_RESUME=<file>, until that file
exists, and then it goes on. Paths come from the usual HEALTH_* variables;
HEALTH_SAMPLE_DIR stands in for the default raw directory, for the sample case.
"""

import collections
import os
import runpy
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg

from health_pipeline import cli, export_files, sample, settings
from health_pipeline.resources import Warehouse

POINT = sys.argv[1]
counts: collections.Counter = collections.Counter()


def passing(kind: str, text: str = "") -> None:
    counts[kind, text] += 1
    if POINT == f"{kind}:{text + ':' if text else ''}{counts[kind, text]}":
        print(f"REACHED {POINT}", flush=True)
        resume = Path(os.environ.get("CRASH_DRIVER_RESUME", "/nonexistent"))
        for _ in range(6000):
            if resume.exists():
                return
            time.sleep(0.1)


class WatchedConnection:
    """A DuckDB connection that reports each statement it has executed."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql, *args, **kwargs):
        result = self._conn.execute(sql, *args, **kwargs)
        if POINT.startswith("sql:"):
            text = POINT.split(":")[1]
            if text in sql:
                passing("sql", text)
        return result

    def __getattr__(self, name):
        return getattr(self._conn, name)


original_connection = Warehouse.get_connection


@contextmanager
def watched_connection(self, read_only: bool = False, create: bool = False):
    passing("connect")
    with original_connection(self, read_only, create) as conn:
        yield WatchedConnection(conn)


original_replace = os.replace


def watched_replace(src, dst):
    if str(src).endswith(".tmp"):
        passing("tmp")
        original_replace(src, dst)
        passing("renamed")
    else:
        original_replace(src, dst)


original_duplicates = sample._with_duplicates


def watched_duplicates(rng, frame):
    counts["sample-frames", ""] += 1
    if counts["sample-frames", ""] % 2 == 1 and counts["sample-frames", ""] > 1:  # sessions then events
        passing("sample")
    return original_duplicates(rng, frame)


def watched_copy_write(self, buffer):
    original_copy_write(self, buffer)
    passing("pgcopy")


original_copy_write = psycopg.Copy.write
psycopg.Copy.write = watched_copy_write
Warehouse.get_connection = watched_connection
export_files.os.replace = watched_replace
sample._with_duplicates = watched_duplicates
if os.environ.get("HEALTH_SAMPLE_DIR"):
    settings.PATH_DEFAULTS["HEALTH_RAW_DIR"] = Path(os.environ["HEALTH_SAMPLE_DIR"])
if sys.argv[2] == "--":
    sys.argv = [str(Path(sys.executable).parent / sys.argv[3]), *sys.argv[4:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
else:
    sys.exit(cli.main(["run", "--start", sys.argv[2], "--end", sys.argv[3]]))
