"""Every .sql file renders with the shipped scorecard and with other valid ones, and DuckDB parses
the result: a broken template fails here, not in a run."""

from __future__ import annotations

from pathlib import Path

import duckdb
import jinja2
import pytest
import yaml

from health_pipeline.assets.account_health.asset import account_health_sql
from health_pipeline.assets.account_metrics.asset import account_metrics_sql
from health_pipeline.assets.raw_activity.asset import HISTORIES, SIGNAL_COLUMNS, activity_tables
from health_pipeline.checks import RAW_IDS, SHARE_METRICS
from health_pipeline.import_templates import load_template, template_rows_sql
from health_pipeline.import_templates import names as import_template_names
from health_pipeline.raw_input import RAW_TABLES, SIGNAL_TABLES, RawTable, locate_table
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.scorecard.parser import load_config
from health_pipeline.settings import DEFAULT_CONFIG_PATH
from health_pipeline.sql import PACKAGE_DIR, SqlFolder, quote, render, sql_files
from health_pipeline.sql import _templates as sql_templates
from health_pipeline_tests.conftest import RawData


def _variant(tmp_path: Path) -> HealthConfig:
    """A scorecard unlike the default: other events, a numeric and a text segment rule, no footprint."""
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["events"]["features"] = [*raw["events"]["features"], "export_csv"]
    raw["segments"] = [
        {"name": "big", "when": {"arr": {"gte": 100000}, "vertical": {"not_in": ["media"]}}},
        {"name": "few_contacts", "when": {"contacts_total": {"lt": 3}}},
    ]
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


def _raw_tables(root: Path, fmt: str) -> dict:
    data = RawData(
        users=[{"user_id": "u1", "identity": "a@x.io", "joindate": "2026-06-01", "account_id": "A", "role": "admin"}],
        accounts=[{"account_id": "A", "name": "Acme", "owner": "Ana", "plan": "growth", "arr": 10.0,
                   "vertical": "saas", "customer_since": "2026-01-01", "status": "paying"}],
        sessions=[{"session_id": "s1", "user_id": "u1", "time": "2026-06-02 10:00:00"}],
        events=[{"event_id": "e1", "user_id": "u1", "session_id": "s1", "time": "2026-06-02 10:00:00",
                 "event_table_name": "run_query"}],
        migrations=[{"from_user_id": "u0", "to_user_id": "u1", "time": "2026-06-02 09:00:00"}],
        outcomes=[{"account_id": "A", "outcome_date": "2026-06-30", "outcome": "renewed", "arr_before": 10.0,
                   "arr_after": 10.0, "reason": None}],
        signals={
            "csm_pulse": [{"account_id": "A", "pulse_date": "2026-06-03", "sentiment": "red", "note": "x",
                           "author": "Ana"}],
            "tickets": [{"ticket_id": "t1", "account_id": "A", "opened_at": "2026-06-02 10:00:00",
                         "closed_at": None, "priority": "high", "status": "open"}],
            "nps_responses": [{"user_id": "u1", "account_id": None, "responded_at": "2026-06-02 10:00:00",
                               "score": 9}],
            "invoices": [{"invoice_id": "i1", "account_id": "A", "due_date": "2026-06-01", "paid_at": None,
                          "amount": 10.0}],
        },
    )
    raw_dir = data.write(root / fmt, fmt)
    with duckdb.connect() as conn:
        return {name: locate_table(conn, raw_dir, name) for name in RAW_TABLES}


def _contexts(config: HealthConfig, tables: dict) -> dict[str, list[str]]:
    """Each .sql file (relative to the package) rendered every way the code renders it."""
    activities = activity_tables(tables)
    raw = "assets/raw_activity/"
    rendered = {
        f"{raw}accounts_read.sql": [render(PACKAGE_DIR / f"{raw}accounts_read.sql", accounts=tables["accounts"])],
        f"{raw}users_read.sql": [render(PACKAGE_DIR / f"{raw}users_read.sql", users=tables["users"])],
        f"{raw}migrations_read.sql": [render(PACKAGE_DIR / f"{raw}migrations_read.sql", migrations=m)
                                      for m in (tables["user_migrations"], None)],
        f"{raw}quarantine_classified_rows.sql": [
            render(PACKAGE_DIR / f"{raw}quarantine_classified_rows.sql", classified=c, activity=a, into=into)
            for c, a in (("accounts_read", None), *((f"{a.name}_suspect_classified", a) for a in activities))
            for into in ("quarantine_rows", "raw.quarantine")],
        f"{raw}daily_contact_activity.sql": [render(PACKAGE_DIR / f"{raw}daily_contact_activity.sql", config=config)],
        f"{raw}events_counted.sql": [render(PACKAGE_DIR / f"{raw}events_counted.sql", config=config)],
        f"{raw}outcomes_read.sql": [render(PACKAGE_DIR / f"{raw}outcomes_read.sql", outcomes=o)
                                    for o in (tables["outcomes"], None)],
        f"{raw}quarantine_attribute_rows.sql": [
            render(PACKAGE_DIR / f"{raw}quarantine_attribute_rows.sql", classified=c)
            for c in ("accounts_read", "outcomes_read", *(f"{t}_read" for t in SIGNAL_TABLES))],
        **{f"{raw}{name}_read.sql": [render(PACKAGE_DIR / f"{raw}{name}_read.sql", **{name: t})
                                     for t in (tables[name], RawTable.absent(name))] for name in SIGNAL_TABLES},
        f"{raw}signal_snapshot.sql": [render(PACKAGE_DIR / f"{raw}signal_snapshot.sql", table=name,
                                             columns=SIGNAL_COLUMNS[name]) for name in SIGNAL_TABLES],
        f"{raw}history_recorded.sql": [
            render(PACKAGE_DIR / f"{raw}history_recorded.sql", history=h, snapshot=snapshot, key=k, attributes=a)
            for h, (snapshot, k, a) in HISTORIES.items()],
        "assets/score_backtest/backtest_pairs.sql": [
            render(PACKAGE_DIR / "assets/score_backtest/backtest_pairs.sql", config=config, scores=scores)
            for scores in ("core.account_health", 'scratch."candidate".account_health')],
        "assets/account_metrics/account_metrics.sql": [account_metrics_sql(config)],
        "assets/account_health/account_health.sql": [account_health_sql(config, with_history=h) for h in (True, False)],
        f"{raw}fact_in_the_lake.sql": [render(PACKAGE_DIR / f"{raw}fact_in_the_lake.sql",
                                              files="/lake/it's/daily_contact_activity/*/*.parquet")],
    }
    rendered[f"{raw}activity_classified.sql"] = [
        render(PACKAGE_DIR / f"{raw}activity_classified.sql", activity=a, any_stored=any_stored,
               rows=f"{a.name}{rows}", view=f"{a.name}{view}")
        for a in activities for any_stored in (True, False)
        for rows, view in (("_in_range", "_classified"), ("_suspect", "_suspect_classified"))]
    for name in ("activity_in_range", "kept_copies", "activity_loaded", "quarantine_undated_rows",
                 "superseded_copies", "superseded_days", "suspect_rows"):
        rendered[f"{raw}{name}.sql"] = [render(PACKAGE_DIR / f"{raw}{name}.sql", activity=a) for a in activities]
    rendered[f"{raw}stored_elsewhere.sql"] = [
        render(PACKAGE_DIR / f"{raw}stored_elsewhere.sql", activity=a, stored=stored, same_id_type=same)
        for a in activities for stored in (True, False) for same in (True, False)]
    for name in ("contact_metrics/contact_metrics", "contact_metrics/contact_recency_checkpoint",
                 "sync_export/sync_export", "contact_usage/contact_usage", "band_changes/band_changes",
                 "alerts/alerts_due", "morning_report/report_accounts"):
        rendered[f"assets/{name}.sql"] = [render(PACKAGE_DIR / f"assets/{name}.sql", config=config)]
    for name in ("raw_ids_and_times", "raw_ids_unique", "raw_times_in_partition"):
        rendered[f"checks/{name}.sql"] = [render(PACKAGE_DIR / f"checks/{name}.sql", table=t, id_column=i)
                                          for t, i in RAW_IDS.items()]
    rendered["checks/negative_counts.sql"] = [
        render(PACKAGE_DIR / "checks/negative_counts.sql", table="core.account_metrics", columns=c)
        for c in ([], ["contacts_total", "usage_28d"])]
    rendered["checks/share_range.sql"] = [render(PACKAGE_DIR / "checks/share_range.sql", metric=m)
                                          for m in SHARE_METRICS]
    for name in ("score_history", "bin_counts"):
        rendered[f"assets/morning_report/{name}.sql"] = [
            render(PACKAGE_DIR / f"assets/morning_report/{name}.sql", components=config.components)]
    rendered["import_templates/template_rows.sql"] = [
        template_rows_sql(load_template(name, config)) for name in import_template_names()]
    synced = {"schema": "health", "table": "account_health", "staging": "staged_account_health",
              "key": ["account_id", "snapshot_date"], "view": "account_health_latest",
              "wanted": "wanted_account_health_latest", "query": "SELECT 1"}
    for path in (PACKAGE_DIR / "assets/postgres_sync").glob("*.pg.sql"):
        columns = [("account_id", "text"), ("snapshot_date", "date")] \
            if path.name in ("synced_table.pg.sql", "new_columns.pg.sql") else ["account_id", "snapshot_date"]
        rendered[path.relative_to(PACKAGE_DIR).as_posix()] = [render(path, **synced, columns=columns)]
    rendered |= _source_contexts()
    for path in sql_files():
        relative = path.relative_to(PACKAGE_DIR).as_posix()
        if relative not in rendered:  # needs no context: a fixed statement, or only macros
            rendered[relative] = [render(path)]
    return rendered


def _source_contexts() -> dict[str, list[str]]:
    """The raw sources' statements (health_pipeline/sources): the landing's, and the warehouse
    source's, which are written in DuckDB's dialect before sqlglot writes them for a warehouse."""
    sources = PACKAGE_DIR / "sources"
    events = {"event_id": True, "user_id": True, "session_id": False, "time": True}
    warehouse = {"schema": "heap", "table": "all_events",
                 "columns": {c: c.upper() for c in RAW_TABLES["all_events"]}}
    return {
        "sources/landed_activity.sql": [
            render(sources / "landed_activity.sql", columns=events, time_kind=kind, file_name="dump-1-{i}",
                   with_event_table_name=with_name)
            for kind in ("timestamptz", "timestamp", "epoch", "text") for with_name in (True, False)],
        "sources/merged_dimension.sql": [render(sources / "merged_dimension.sql", key="user_id", earlier=earlier)
                                         for earlier in (True, False)],
        "sources/changed_days.sql": [render(sources / "changed_days.sql", any_before=before, any_after=after)
                                     for before, after in ((True, True), (True, False), (False, True))],
        "sources/warehouse_day_digests.sql": [render(sources / "warehouse_day_digests.sql", **warehouse)],
        "sources/warehouse_rows.sql": [render(sources / "warehouse_rows.sql", **warehouse, part=part)
                                       for part in ("days", "undated", "whole")],
    }


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_every_sql_file_renders_and_parses_with_each_scorecard(tmp_path, fmt):
    tables = _raw_tables(tmp_path, fmt)
    files = {p.relative_to(PACKAGE_DIR).as_posix() for p in sql_files()}
    for config in (load_config(), _variant(tmp_path)):
        rendered = _contexts(config, tables)
        assert set(rendered) == files
        for relative, texts in rendered.items():
            if relative.endswith(".pg.sql"):  # PostgreSQL's dialect: run against a real server (test_postgres_sync.py)
                continue
            for sql in texts:
                statements = duckdb.extract_statements(sql)  # raises on a syntax error
                assert statements or Path(relative).name.startswith("_"), relative


def test_a_name_the_template_needs_but_was_not_given_fails_at_once():
    with pytest.raises(jinja2.UndefinedError, match="is undefined"):
        SqlFolder(PACKAGE_DIR / "assets/account_health/asset.py").render("account_health", config=load_config())


def test_configured_names_are_quoted_as_identifiers():
    assert quote("run_query_28d") == '"run_query_28d"'
    assert quote('a"b') == '"a""b"'
    with duckdb.connect() as conn:
        assert conn.execute(f"SELECT 1 AS {quote('x; DROP TABLE y')}").description[0][0] == "x; DROP TABLE y"


def test_a_compiled_sql_template_is_kept_in_the_cache_folder_for_the_next_process(monkeypatch, tmp_path):
    """Each run's assets render their SQL in fresh processes: the templates compiled once are kept."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(sql_templates, "cache", {})  # as in a new process: nothing compiled in memory yet
    folder = SqlFolder(PACKAGE_DIR / "assets" / "morning_report" / "site.py")
    text = folder.render("band_shares")
    assert len(list((tmp_path / "health_pipeline").glob("templates-*.cache"))) == 1
    monkeypatch.setattr(sql_templates, "cache", {})
    monkeypatch.setattr(jinja2.Environment, "compile", lambda *args, **kwargs: pytest.fail("compiled again"))
    assert folder.render("band_shares") == text
