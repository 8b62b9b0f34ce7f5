"""`health-pipeline`: generate sample data, and run the whole pipeline without a server."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from health_pipeline import DATA_DIR, settings
from health_pipeline.assets import IncompleteHistory
from health_pipeline.assets.alerts.asset import SEND_PAST_TAG
from health_pipeline.assets.alerts.sinks import SinkError, secret_env_vars
from health_pipeline.assets.morning_report.site import ReportFolderError, report_root
from health_pipeline.assets.postgres_sync.asset import PostgresSyncFailed
from health_pipeline.checks import ACCEPT_SNAPSHOT_TAG, AuditFailed
from health_pipeline.engines import EngineMismatch
from health_pipeline.engines.spark import SparkEngineError
from health_pipeline.partitions import partition_range_tags
from health_pipeline.publish import SchemaChangeError
from health_pipeline.raw_input import OPTIONAL_TABLES, RAW_TABLES, EventDays, RawInputError
from health_pipeline.recovery import (
    check_warehouse,
    end_run,
    open_instance,
    process_tags,
    recover,
    stop_cleanly_on_signals,
    wait_for_the_warehouse,
)
from health_pipeline.redaction import redact
from health_pipeline.resources import PostgresSyncBlocked, PostgresUnavailable, Warehouse, WarehouseError, raw_source
from health_pipeline.sample import SAMPLE_DAYS, SampleSpec, generate_sample, write_heap_delivery
from health_pipeline.scorecard.parser import ConfigError
from health_pipeline.settings import SettingsError
from health_pipeline.sources import RawSource
from health_pipeline.sources.crm_mappings import CrmMappingError
from health_pipeline.sql import table_exists


class Refused(Exception):
    """A command cannot go on; its message says why and what to do."""


# The failures whose message already says what is wrong and what to do: printed alone, no traceback.
KNOWN_FAILURES = {cls.__name__ for cls in (
    RawInputError, WarehouseError, PostgresUnavailable, PostgresSyncFailed, PostgresSyncBlocked, SchemaChangeError,
    AuditFailed, SinkError, ConfigError, SettingsError, ReportFolderError, IncompleteHistory, CrmMappingError,
    EngineMismatch, SparkEngineError)}


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a YYYY-MM-DD date") from None


def cmd_generate_sample(args: argparse.Namespace) -> int:
    if args.layout == "heap-s3" and args.live:
        raise Refused("--live needs --layout folder: a Heap S3 delivery is written whole")
    spec = SampleSpec.ending(args.end, accounts=args.accounts, days=args.days, seed=args.seed, live=args.live)
    out = Path(args.out)
    if args.layout == "heap-s3":
        folder = out.with_name(f".{out.name}.folder")
        generate_sample(folder, spec)
        counts = write_heap_delivery(folder, out)
        shutil.rmtree(folder)
    else:
        counts = generate_sample(out, spec)
    print(f"wrote sample raw data for {spec.start} .. {spec.end} to {out.resolve()}"
          f"{' (live: each run adds the days it covers)' if spec.live else ''}"
          f"{' as a Heap Connect S3 delivery (a local copy of its bucket)' if args.layout == 'heap-s3' else ''}: "
          + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings.load_with_scorecard()  # a bad setting or scorecard stops the run before a sample is written
    raw_dir = settings.path("HEALTH_RAW_DIR")
    source = raw_source(for_dagster=False)
    if source.kind == "folder" and not any(raw_dir.glob("users*")):
        if settings.is_set("HEALTH_RAW_DIR"):
            raise Refused(f"no raw data in HEALTH_RAW_DIR={raw_dir}: {expected_tables()}")
        spec = SampleSpec.ending(settings.yesterday(), live=True)
        print(f"no raw data in {raw_dir}: generating a live sample of {spec.accounts} accounts for "
              f"{spec.start} .. {spec.end} first")
        # Generated aside and renamed into place, so a killed generation leaves no half sample.
        partial = raw_dir.with_name(f".{raw_dir.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        generate_sample(partial, spec)
        os.replace(partial, raw_dir)
    try:
        # A remote source is landed before the range is chosen: the range follows what it holds.
        read = source.prepare(print)
    except RawInputError as exc:
        raise Refused(str(exc)) from None
    if "dumps_read" in read:
        print(f"{source.kind} source: dumps read {read['dumps_read']}")
    job = _load_job()  # after any sample exists: the first partition is the raw data's first day
    first_day, last_day = _run_range(source, args.start, args.end)
    tags = {**partition_range_tags(first_day, last_day), **process_tags(),
            **({ACCEPT_SNAPSHOT_TAG: "true"} if args.accept_snapshot else {}),
            **({SEND_PAST_TAG: "true"} if args.send_past else {})}
    with open_instance() as instance:
        return _execute(job, instance, tags, first_day, last_day, args.debug)


def _run_range(source: RawSource, start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
    """The days to run: as given, else the days the raw events cover (isolated days aside), up to
    yesterday. A day after yesterday, or an --end after the data's last day, is refused at once."""
    yesterday = settings.yesterday()
    for flag, day in (("--start", start), ("--end", end)):
        if day is not None and day > yesterday:
            raise Refused(f"{flag} {day} is after yesterday, {yesterday} (UTC): a day is run once it is over")
    if added := source.add_live_sample_days(end or yesterday):  # a live sample: the data now reaches the end
        print(f"live sample: generated {added[0]} .. {added[-1]}")
    first_partition = dt.date.fromisoformat(settings.load().partitions_start)
    try:
        covered = source.event_days()
    except RawInputError as exc:
        raise Refused(str(exc)) from None
    if covered is None:
        raise Refused(f"the raw events in {source.readable_dir} have no rows: nothing to run")
    for line in _isolated_days(covered, first_partition, yesterday):
        print(line)
    if end is not None and end > covered.last:
        aside = " (isolated days aside)" if covered.isolated_after else ""
        raise Refused(f"--end {end} is after the raw events' last day, {covered.last}{aside}: there is no data to "
                      "run after it")
    if start is None or end is None:
        start = start or max(covered.first, first_partition)
        end = end or min(covered.last, yesterday)
        print(f"the raw events in {source.readable_dir} cover {covered.first} .. {covered.last}: running "
              f"{start} .. {end} (--start and --end choose other days)")
    if start < first_partition:
        raise Refused(f"--start {start} is before the first daily partition, {first_partition} "
                      "(HEALTH_PARTITIONS_START, else the raw data's first day)")
    if end < start:
        raise Refused(f"--end {end} is before --start {start}")
    return start, end


def _isolated_days(covered: EventDays, first_partition: dt.date, yesterday: dt.date) -> list[str]:
    """A line for the isolated days before the data and one for those after it, which a run's
    days leave out, saying what becomes of their rows."""
    def ignoring(days: tuple[tuple[dt.date, int], ...], side: str, fate: str) -> str:
        rows = sum(n for _, n in days)
        span = f"{days[0][0]}" if len(days) == 1 else f"{days[0][0]} .. {days[-1][0]}"
        them = "it" if rows == 1 else "them"
        return (f"ignoring {rows:,} event{'s' if rows > 1 else ''} on {span}, isolated from the rest of the data, "
                f"which {side}: {fate.format(them=them)}")

    lines = []
    if before := covered.isolated_before:
        reachable = [day for day, _ in before if day >= first_partition]
        fate = (f"the default days leave {{them}} out (a run from --start {reachable[0]} reads {{them}})" if reachable
                else "no run reads {them}, as the first daily partition comes after")
        lines.append(ignoring(before, f"starts {covered.first}", fate))
    if after := covered.isolated_after:
        fate = "--end cannot reach {them}"
        if after[-1][0] > yesterday:
            fate += ("; every run quarantines the rows dated more than HEALTH_FUTURE_TOLERANCE_HOURS (default 24) "
                     "past its clock as future_time")
        lines.append(ignoring(after, f"ends {covered.last}", fate))
    return lines


def expected_tables() -> str:
    """The raw tables a raw directory must hold, and how, for a message."""
    tables = [f"{name}{' (optional)' if name in OPTIONAL_TABLES else ''}" for name in RAW_TABLES]
    return (f"expected the tables {', '.join(tables)}, each as <name>.parquet, <name>.csv or a folder <name>/ "
            "or <name>.parquet/ of parquet files (docs/sources.md: Pointing it at real data)")


def _load_job():
    """The pipeline's job; bad settings or a bad scorecard are refused, one line each."""
    try:
        from health_pipeline.definitions import HEALTH_JOB, defs
    except SettingsError as exc:
        raise Refused(str(exc)) from None
    return defs.resolve_job_def(HEALTH_JOB)


def _execute(job, instance, tags: dict, first_day: dt.date, last_day: dt.date, debug: bool = False) -> int:
    run_id = str(uuid.uuid4())  # known before the run starts, so an interrupt can end it
    # One line per stage; Dagster's own log (and its stack traces) only with --debug.
    loggers = {"progress": {}, **({"console": {"config": {"log_level": "DEBUG"}}} if debug else {})}
    result = None
    with stop_cleanly_on_signals() as received:
        try:
            # Dagster's executor waits for a held slot where no signal reaches it: wait here first.
            wait_for_the_warehouse(instance, _warehouse())
            print(f"materializing every asset for {first_day} .. {last_day} in one run "
                  f"(Dagster instance: {instance.root_directory})")
            result = job.execute_in_process(
                instance=instance, run_id=run_id, tags=tags, run_config={"loggers": loggers}, raise_on_error=False,
            )
        except KeyboardInterrupt:
            pass  # interrupted outside a step: ended below
    if received or _interrupted(result):
        # Dagster maps SIGTERM to SIGINT while a step runs, so which one came is not always known.
        name = received[0].name if received else "SIGINT or SIGTERM"
        run = instance.get_run_by_id(run_id)
        if run is None:
            print(f"stopped by {name} before the run started: nothing was claimed or started", file=sys.stderr)
            return 130
        end_run(instance, run, f"stopped by {name}")
        print(f"stopped by {name}: run {run_id} marked failed, its warehouse slot freed; "
              "the step in progress was rolled back", file=sys.stderr)
        return 130  # the shell's code for a command interrupted
    if not result.success:
        # The steps redact what they raise; this is the last net, should any library's text slip through.
        secrets = secret_env_vars(_production().alerts)
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                print(redact(error.to_string() if debug else f"{event.step_key} failed: {_cause(error)}", secrets),
                      file=sys.stderr)
        if _published(result, "sync_export"):  # only a delivery failed: the local outputs are there
            print_summary(last_day)
        return 1
    print_summary(last_day)
    return 0


def _published(result, asset: str) -> bool:
    return any(event.asset_key.to_user_string() == asset for event in result.get_asset_materialization_events())


def _cause(error) -> str:
    """The asset's own error under Dagster's wrappers: its message alone for the failures the
    pipeline knows and explains, else its class and message and how to see the traceback."""
    while error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    message = error.message.strip().split(": ", 1)[-1]
    if error.cls_name in KNOWN_FAILURES:
        return message
    return f"{error.cls_name}: {message} (run again with --debug for Dagster's log and the traceback)"


def _interrupted(result) -> bool:
    """Whether Dagster stopped a step because the process was told to stop."""
    return result is None or any(
        event.is_step_failure and event.step_failure_data.error.cls_name == "DagsterExecutionInterruptedError"
        for event in result.all_events
    )


def cmd_check(args: argparse.Namespace) -> int:
    """Parse every HEALTH_* setting and the scorecard, as the definitions do when they load, and say
    what they amount to; every problem is a line of its own (printed by main, exit 2)."""
    loaded, config = settings.load_with_scorecard()
    print(f"settings: raw data {loaded.raw_dir}, warehouse {loaded.warehouse}, exports {loaded.export_dir}; "
          f"first daily partition {loaded.partitions_start}; late days {loaded.late_days}, report days "
          f"{loaded.report_days}, backtest lead days {', '.join(map(str, loaded.backtest_lead_days))}; "
          f"PostgreSQL sync {'on' if 'url' in loaded.postgres else 'off'}")
    print(f"scorecard {loaded.config}: {len(config.tracked_events)} tracked events; segments "
          f"{', '.join(s.name for s in config.segments)}; {len(config.components)} components; "
          f"{len(config.onboarding.measures)} onboarding measures; alerts to "
          f"{', '.join(config.alerts.sinks) or 'no sink'}")
    print("no problems found")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    """Free what runs that died left behind, and check the warehouse opens."""
    warehouse = _warehouse()
    with open_instance() as instance:
        done = recover(instance, warehouse, tuple(args.run_id))
    print("\n".join(done) or "no unfinished run of a dead process")
    print(check_warehouse(warehouse))
    return 0


def _warehouse() -> Warehouse:
    """The warehouse HEALTH_WAREHOUSE names, as the CLI opens it outside a run."""
    return Warehouse(database=str(settings.path("HEALTH_WAREHOUSE")))


AT_RISK_PRINTED = 10


def print_summary(snapshot_date: dt.date) -> None:
    """Where the sync table is; the accounts at risk by their health score on `snapshot_date` and,
    apart, the onboarding accounts whose activation is red (the lowest scores, and the largest ARR,
    of each first); and who changed band."""
    from health_pipeline.assets.morning_report.site import activation_red, arr_of, at_risk_by_health, report_accounts

    warehouse = _warehouse()
    export_dir = settings.path("HEALTH_EXPORT_DIR").resolve()
    with warehouse.get_connection(read_only=True) as conn:
        accounts = report_accounts(conn, _production(), snapshot_date)
        backtest = backtest_summary(conn)
        moves = conn.execute(
            """
            SELECT account_id, owner, from_band, to_band, health_score, top_drag
            FROM export.band_changes WHERE snapshot_date = $snapshot_date
            ORDER BY direction DESC, account_id
            """,
            {"snapshot_date": snapshot_date},
        ).df()
    print(f"\nsync table: export.account_health in {Path(warehouse.database).resolve()}")
    print(f"sync files: {export_dir / 'account_health'}/snapshot_date=YYYY-MM-DD.parquet and .csv")
    print(f"band changes: export.band_changes and {export_dir / 'band_changes'}/")
    report = report_root(export_dir) / snapshot_date.isoformat() / "index.html"
    if not settings.report_days():  # a site of this day on disk is an earlier run's
        print("morning report: none built (HEALTH_REPORT_DAYS=0; `health-pipeline report` builds one)")
    elif report.exists():
        print(f"morning report: {report} (open it in a browser; {report_root(export_dir) / 'latest'} is the newest)")
    at_risk = at_risk_by_health(accounts)
    red = sorted(activation_red(accounts), key=lambda a: -(a["arr"] or 0))
    total = arr_of(accounts)
    with pd.option_context("display.max_colwidth", 110, "display.width", 250):
        share = f", {arr_of(at_risk) / total:.1%} of all ARR" if total else ""
        print(f"\n{len(at_risk)} accounts at risk by their health score on {snapshot_date} (ARR "
              f"{arr_of(at_risk):,.0f}{share})" + (f"; the {AT_RISK_PRINTED} lowest scores:" if len(at_risk) >
                                                    AT_RISK_PRINTED else (":" if at_risk else "")))
        _print_accounts(at_risk[:AT_RISK_PRINTED], ["account_id", "owner", "arr", "segment", "health_score",
                                                    "score_delta_7d", "score_reason"])
        print(f"\n{len(red)} onboarding accounts whose activation is red on {snapshot_date}, counted apart from "
              f"health (ARR {arr_of(red):,.0f})" + (f"; the {AT_RISK_PRINTED} largest:" if len(red) > AT_RISK_PRINTED
                                                   else (":" if red else "")))
        _print_accounts(red[:AT_RISK_PRINTED], ["account_id", "owner", "arr", "customer_since", "score_reason"])
        if len(moves):
            print(f"\n{len(moves)} accounts changed band on {snapshot_date}:")
            print(moves.to_string(index=False, float_format=lambda v: f"{v:.1f}", na_rep="-"))
        else:
            print(f"\nno account changed band on {snapshot_date}")
        print_backtest_headline(backtest)


def _print_accounts(accounts: list[dict], columns: list[str]) -> None:
    if accounts:
        frame = pd.DataFrame(accounts, columns=columns)
        print(frame.to_string(index=False, na_rep="-", formatters={
            "arr": "{:,.0f}".format, "health_score": "{:.1f}".format, "score_delta_7d": "{:+.1f}".format}))


def backtest_summary(conn) -> pd.DataFrame | None:
    """The backtest's headline figures per scorecard version and lead; None before its first run."""
    if not table_exists(conn, "export.backtest_summary"):
        return None
    return conn.execute("SELECT scorecard_version, lead_days, n_outcomes, n_churned, auc, auc_ci_low, auc_ci_high, "
                        "at_risk_precision, at_risk_recall FROM export.backtest_summary ORDER BY ALL").df()


def print_backtest_headline(summary: pd.DataFrame | None) -> None:
    export_dir = settings.path("HEALTH_EXPORT_DIR").resolve()
    if summary is None:
        return
    if summary.empty:
        print("\nbacktest: no outcomes yet (add an outcomes export to the raw directory; see docs/backtest.md, "
              "'Feed it real outcomes')")
        return
    print(f"\nbacktest (export.backtest_*, plot: {export_dir / 'backtest' / 'churn_rate_by_band.png'}):")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))


@contextmanager
def _sync_table_connection():
    """A read-only connection to the warehouse, which must hold a sync table."""
    warehouse = _warehouse()
    if not Path(warehouse.database).exists():
        raise Refused(f"no warehouse at {warehouse.database}: run `health-pipeline run` first")
    with warehouse.get_connection(read_only=True) as conn:
        if not table_exists(conn, "export.account_health"):
            raise Refused("the warehouse has no sync table yet: run `health-pipeline run` first")
        yield conn


def cmd_report(args: argparse.Namespace) -> int:
    """Build the morning report of one scored day from the warehouse, without running the pipeline;
    with --serve, serve the report folder on 127.0.0.1 instead."""
    if args.serve:
        return serve_report(args.port, args.date)
    from health_pipeline.assets.morning_report.site import build_report
    from health_pipeline.assets.sync_export.asset import newest_scored_day
    from health_pipeline.scorecard.parser import ConfigError

    try:
        config = _production()
        with _sync_table_connection() as conn:
            args.date = args.date or newest_scored_day(conn)
            site = build_report(conn, config, args.date, settings.path("HEALTH_EXPORT_DIR"))
        if site is None:
            raise Refused(f"no account was scored on {args.date}: nothing to report (the sync table's days are "
                          "the ones `health-pipeline run` covered)")
    except (ConfigError, Refused) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"morning report for {args.date}: {site.index.resolve()} ({site.pages:,} pages, "
          f"{site.size_bytes / 1e6:.1f} MB, built in {site.seconds:.1f} s)")
    return 0


def serve_report(port: int, day: dt.date | None) -> int:
    """Serve the report folder (every date's site) on 127.0.0.1 until interrupted; builds nothing."""
    from health_pipeline.assets.morning_report.site import LATEST, report_server

    root = report_root(settings.path("HEALTH_EXPORT_DIR"))
    site = day.isoformat() if day else LATEST
    if not (root / site / "index.html").exists():
        raise Refused(f"no morning report at {root / site}: build one first (`health-pipeline report"
                      f"{' --date ' + site if day else ''}`, or `health-pipeline run`)")
    try:
        server = report_server(root, port)
    except OSError as exc:
        raise Refused(f"cannot serve the report on 127.0.0.1:{port} ({exc.strerror or exc}): choose another port "
                      "with --port") from None
    address = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"serving {root} at {address}/{site}/index.html (this machine only; Ctrl-C stops). To share the "
          "report, host that folder on a web server and set HEALTH_REPORT_BASE_URL to its address.", flush=True)
    # SIGTERM stops it too, whatever the launcher left it: a process whose SIGINT is ignored (started
    # with & from a script) hands its children an ignored SIGTERM once Dagster has run in it.
    with server, stop_cleanly_on_signals():
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write one day of the sync table as the CSV a CS tool's importer expects."""
    from health_pipeline.assets.sync_export.asset import newest_scored_day
    from health_pipeline.export_files import write_atomically
    from health_pipeline.import_templates import TemplateError, load_template, template_rows
    from health_pipeline.scorecard.parser import ConfigError

    try:
        template = load_template(args.template, _production())
        with _sync_table_connection() as conn:
            args.date = args.date or newest_scored_day(conn)
            scored = conn.execute("SELECT count(*) FROM export.account_health WHERE snapshot_date = $d",
                                  {"d": args.date}).fetchall()[0][0]
            rows = template_rows(conn, template, args.date)
        if not scored:
            raise Refused(f"no account was scored on {args.date}: nothing to export")
    except (ConfigError, TemplateError, Refused) as exc:
        print(exc, file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (settings.path("HEALTH_EXPORT_DIR") / "imports" / template.name
                                          / f"snapshot_date={args.date}.csv")
    write_atomically(rows, out)
    unmatched = scored - rows.num_rows
    print(f"wrote {out.resolve()}: {rows.num_rows:,} rows for a {template.tool} import matched on "
          f"{template.match_on!r}" + (f"; {unmatched:,} accounts without {template.match_source} left out"
                                        if unmatched else ""))
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    """Backtest a candidate scorecard beside the production one, on the same outcomes."""
    from health_pipeline.candidate import TrialError, try_scorecard
    from health_pipeline.scorecard.parser import ConfigError, load_config

    try:
        production, candidate = load_config(settings.config_path()), load_config(args.config)
        trial = try_scorecard(settings.path("HEALTH_WAREHOUSE"), _scratch_path(), production, candidate,
                              settings.backtest_lead_days(), args.start, args.end)
    except (ConfigError, TrialError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"re-scored {trial.first_day} .. {trial.last_day} with {args.config} into {trial.scratch} "
          f"(schema candidate); the warehouse and exports are unchanged\n")
    if trial.comparison.empty:
        print("no outcome was scored by both scorecards in that range: nothing to compare")
        return 0
    with pd.option_context("display.width", 250):
        print(trial.comparison.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    return 0


def cmd_suggest_scorecard(args: argparse.Namespace) -> int:
    """Fit a scorecard from history with a time split, and write it for review."""
    from health_pipeline.candidate import TrialError, suggest

    try:
        fitted = suggest(settings.path("HEALTH_WAREHOUSE"), _production(), settings.config_path(),
                         settings.backtest_lead_days(), Path(args.out))
    except (TrialError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"wrote {args.out}: fitted on outcomes before {fitted.split_date}, checked on the ones on or after it:")
    print(fitted.evidence.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    print(f"review it, then try it: health-pipeline backtest --config {args.out}")
    return 0


def _production():
    from health_pipeline.scorecard.parser import load_config

    return load_config(settings.config_path())


def _scratch_path() -> Path:
    """The scratch database of candidate trials, beside the warehouse."""
    return settings.path("HEALTH_WAREHOUSE").with_name("scratch.duckdb")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="health-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate-sample", help="write deterministic sample raw data in Heap layout")
    gen.add_argument("--accounts", type=int, default=SampleSpec.accounts, help="accounts (default %(default)s)")
    gen.add_argument("--days", type=int, default=SAMPLE_DAYS, help="days, ending on --end (default %(default)s)")
    gen.add_argument("--seed", type=int, default=SampleSpec.seed, help="random seed (default %(default)s)")
    gen.add_argument("--end", type=_date, default=settings.yesterday(),
                     help="last day (default yesterday, UTC: %(default)s); the same end, seed and size give the "
                          "same bytes")
    gen.add_argument("--live", action="store_true",
                     help="a sample that grows: each run first generates the days it covers past the last one")
    gen.add_argument("--out", default=str(DATA_DIR / "raw"), help="output directory (default data/raw)")
    gen.add_argument("--layout", choices=("folder", "heap-s3"), default="folder",
                     help="folder: a table per file or folder, as today (default); heap-s3: Heap Connect's S3 "
                          "delivery, manifests and Avro dumps, as a local copy of its bucket")
    gen.set_defaults(func=cmd_generate_sample)

    run = sub.add_parser("run", help="materialize every asset for a range of days in one run")
    run.add_argument("--start", type=_date, help="first day (default: the raw events' first day)")
    run.add_argument("--end", type=_date,
                     help="last day, inclusive (default: the raw events' last day, at most yesterday, UTC)")
    run.add_argument("--debug", action="store_true", help="show Dagster's log and full tracebacks")
    run.add_argument(
        "--accept-snapshot", action="store_true",
        help="accept accounts or users exports that lost accounts, users or attributes since the last run",
    )
    run.add_argument("--send-past", action="store_true",
                     help="also send the alerts of days older than the daily run's reach (a backfill sends none)")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="check every HEALTH_* setting and the scorecard, listing every problem")
    check.set_defaults(func=cmd_check)

    rec = sub.add_parser("recover", help="after a crash: end the runs whose process died and free their slots")
    rec.add_argument("--run-id", action="append", default=[],
                     help="also end this unfinished run, whatever its process (repeatable)")
    rec.set_defaults(func=cmd_recover)

    report = sub.add_parser("report", help="build the morning report of one scored day, without running the pipeline")
    report.add_argument("--date", type=_date, help="the snapshot date, YYYY-MM-DD (default: the newest scored)")
    report.add_argument("--serve", action="store_true",
                        help="serve the report folder on 127.0.0.1 for a quick look, building nothing (Ctrl-C stops)")
    report.add_argument("--port", type=int, default=8765, help="the port --serve listens on (default %(default)s)")
    report.set_defaults(func=cmd_report)

    from health_pipeline.import_templates import names as template_names

    export = sub.add_parser("export", help="write one day of the sync table as a CS tool's import CSV")
    export.add_argument("--template", required=True, choices=template_names(), help="the tool's import template")
    export.add_argument("--date", type=_date, help="the snapshot date, YYYY-MM-DD (default: the newest scored)")
    export.add_argument("--out", help="the CSV to write (default <export dir>/imports/<template>/snapshot_date=D.csv)")
    export.set_defaults(func=cmd_export)

    trial = sub.add_parser("backtest", help="backtest a candidate scorecard beside the production one")
    trial.add_argument("--config", required=True, type=Path, help="the candidate scorecard YAML file")
    trial.add_argument("--start", type=_date, help="first day to re-score (default: the first scored day)")
    trial.add_argument("--end", type=_date, help="last day to re-score (default: the last scored day)")
    trial.set_defaults(func=cmd_backtest)

    fit = sub.add_parser("suggest-scorecard", help="fit a scorecard from history and write it for review")
    fit.add_argument("--out", default=str(DATA_DIR / "suggested_scorecard.yaml"),
                     help="where to write it (default data/suggested_scorecard.yaml)")
    fit.set_defaults(func=cmd_suggest_scorecard)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (Refused, SettingsError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except WarehouseError as exc:  # found outside a run (recover's probe and check, report, export): says why
        print(exc, file=sys.stderr)
        return 1
    except BrokenPipeError:
        return output_closed()


def output_closed() -> int:
    """End quietly once standard output is closed (`health-pipeline run | head`), as a command that
    SIGPIPE killed does (exit 141). Python's recipe, from the `signal` module's note on SIGPIPE:
    point stdout at /dev/null, so that the flush at exit does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
