"""What a CLI run shows while it runs: each stage's start, its progress, its row counts and time.

`progress_logger` is a Dagster logger the CLI turns on in its run config (`health-pipeline run`;
runs from the UI keep Dagster's own log). It reads the Dagster event on each log record: a
step's start, the materializations and check results it reports, its success or failure, and
the progress lines stages log through `report_progress`. A finished stage's line gives the rows
it wrote, or what its `skipped` or `deliveries` metadata says instead (alerts: what was sent, is
pending and failed, per sink). On a terminal each stage is one line, rewritten in place while it
runs; otherwise every line is printed as it comes, for log files (`ConsoleLines`, which the CLI
also prints its wait for the warehouse with, before a run starts). Once nobody reads the lines (a
closed pipe), they stop, and the run goes on.
"""

from __future__ import annotations

import logging
import sys
import time

import dagster as dg

PROGRESS_PREFIX = "progress: "


def report_progress(message: str) -> None:
    """Tell whoever watches the run how far the current stage has got (a no-op outside a run)."""
    try:
        context = dg.AssetExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return
    context.log.info(PROGRESS_PREFIX + message)


class ConsoleLines:
    """The CLI's lines on standard output: on a terminal, a line that is not final is rewritten in
    place by the next one; otherwise every line is printed as it comes, for log files."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.rewrite = self.stream.isatty()

    def show(self, text: str, final: bool) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(("\r\033[K" + text + ("\n" if final else "")) if self.rewrite else text + "\n")
            self.stream.flush()
        except BrokenPipeError:
            # The reader is gone (`health-pipeline run | head`): the run goes on without its lines, and
            # the CLI ends quietly when it next writes (cli.main). Raised here, it would fail the step.
            self.stream = None


class StageLines(logging.Handler):
    """Turns Dagster's events into one line per stage."""

    def __init__(self, lines: ConsoleLines):
        super().__init__(logging.DEBUG)  # Dagster logs its events at DEBUG
        self._line = lines.show
        self.started: dict[str, float] = {}
        self.rows: dict[str, dict[str, int]] = {}  # step -> asset -> rows written
        self.said: dict[str, str] = {}  # step -> what its line says instead of rows: skipped, or its deliveries
        self.checks: dict[str, list[str]] = {}  # step -> failed checks
        self.open_line = False

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        step, event = meta.get("step_key"), meta.get("dagster_event")
        if step is None:
            return
        if event is None:
            message = meta.get("orig_message", "")
            if message.startswith(PROGRESS_PREFIX):
                self._line(f"{step} … {message.removeprefix(PROGRESS_PREFIX)} ({self._elapsed(step)})", final=False)
            return
        if event.is_step_start:
            self.started[step] = time.monotonic()
            self._line(f"{step} …", final=False)
        elif event.is_step_materialization:
            # The run's own records come first: for a dated table, one per partition of its range,
            # each with the run's rows_in_run beside its day's row count; any other table has one
            # row count. The later days a run refreshed follow, each with only its own day's.
            materialization = event.step_materialization_data.materialization
            asset, metadata = materialization.asset_key.to_user_string(), materialization.metadata
            rows = self.rows.setdefault(step, {})
            if "skipped" in metadata:
                self.said[step] = f"skipped, {metadata['skipped'].value}"
            elif "deliveries" in metadata:
                self.said[step] = str(metadata["deliveries"].value)
            if "pages" in metadata:
                rows.setdefault(f"{asset} pages", int(metadata["pages"].value))
            if "rows_in_run" in metadata:
                rows[asset] = int(metadata["rows_in_run"].value)
            elif "dagster/row_count" in metadata:
                rows.setdefault(asset, int(metadata["dagster/row_count"].value))
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed:
                self.checks.setdefault(step, []).append(evaluation.check_name)
        elif event.is_step_success:
            self._line(f"✓ {step} in {self._elapsed(step)}{self._summary(step)}", final=True)
        elif event.is_step_failure:
            failed = self.checks.get(step)
            self._line(f"✗ {step} failed after {self._elapsed(step)}"
                       + (f" (check {', '.join(failed)})" if failed else ""), final=True)

    def _elapsed(self, step: str) -> str:
        return f"{time.monotonic() - self.started.get(step, time.monotonic()):.1f} s"

    def _summary(self, step: str) -> str:
        if step in self.said:
            return f": {self.said[step]}"
        rows = self.rows.get(step, {})
        return ": " + ", ".join(f"{asset} {count:,}" + ("" if asset.endswith(" pages") else " rows")
                                for asset, count in rows.items()) if rows else ""


@dg.logger(description="One line per stage, with its rows and time: the CLI's progress.")
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.getLogger(f"health_pipeline.progress.{init_context.run_id}")
    logger.handlers.clear()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(StageLines(ConsoleLines()))
    return logger
