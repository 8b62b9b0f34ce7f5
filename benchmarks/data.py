"""Benchmark scales, and the raw data for each, generated once with the project's generator."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from health_pipeline import DATA_DIR
from health_pipeline.sample import SampleSpec, generate_sample, owners

BENCH_DIR = DATA_DIR / "bench"

# About 42 users per account and 200 events per account per day (weekends are quieter).
USERS_SCALE = 1.85
EVENTS_SCALE = 7.0


@dataclass(frozen=True)
class Scale:
    name: str
    accounts: int
    days: int
    short_history: int = 10  # scenario 1: the shorter history
    # Scenario 1's middle history: long enough to fill every window a daily run reads (the longest
    # reach 90 days back), so that the run after it does all the windowed work the run after the
    # whole history does. Measured only when the whole history is longer.
    window_history: int = 100
    note: str = ""
    # L starts a year earlier: a year from the sample's start would end in the future, whose events
    # a run quarantines (future_time).
    start: dt.date = SampleSpec.start

    def spec(self, accounts: int | None = None, days: int | None = None) -> SampleSpec:
        return SampleSpec(
            accounts=accounts or self.accounts, days=days or self.days, seed=7,
            users_scale=USERS_SCALE, events_scale=EVENTS_SCALE, start=self.start,
        )


SCALES = {
    "S": Scale("S", accounts=25, days=30, window_history=20,  # short of the windows, to run the code path
               note="CI: the same code paths in well under 2 minutes"),
    "M": Scale("M", accounts=5_000, days=100, note="100 days x ~1M events a day, ~200k users, 5k accounts"),
    "L": Scale("L", accounts=5_000, days=365, note="365 days x ~1M events a day; run by hand",
               start=dt.date(2025, 6, 1)),
}


def raw_data(directory: Path, spec: SampleSpec, log=print) -> dict:
    """Generate raw data for `spec` into `directory` unless it is already there; return its counts."""
    marker = directory / "counts.json"
    # The owners' count too: data generated before larger samples had more CSMs is regenerated.
    wanted = {**{k: str(v) for k, v in asdict(spec).items()}, "owners": str(len(owners(spec.accounts)))}
    if marker.exists():
        saved = json.loads(marker.read_text())
        # Data generated before the sample had outcomes lacks the backtest's input.
        if saved["spec"] == wanted and (directory / "outcomes.parquet").exists():
            return saved["counts"]
    log(f"generating {directory} ({spec})")
    started = time.perf_counter()
    counts = generate_sample(directory, spec)
    counts["generate_seconds"] = round(time.perf_counter() - started, 1)
    marker.write_text(json.dumps({"spec": wanted, "counts": counts}, indent=1))
    return counts
