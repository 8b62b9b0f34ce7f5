"""The morning report: which days get a site, where it goes, what its pages say, and that every
value from the data is escaped. The browser tests (test_report_browser.py) open the pages."""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import dagster as dg
import jinja2
import pandas as pd
import pytest
import vl_convert
from hypothesis import example, given
from hypothesis import strategies as st
from markupsafe import escape

from health_pipeline import cli
from health_pipeline.assets.morning_report import charts
from health_pipeline.assets.morning_report.asset import report_dates, site_metadata
from health_pipeline.assets.morning_report.charts import chart_specs
from health_pipeline.assets.morning_report.site import (
    Site,
    Style,
    _chart_specs,
    _templates,
    build_report,
    page_names,
    report_root,
)
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.scorecard.parser import load_config
from health_pipeline_tests.conftest import Pipeline, run_records

# 30 days: the shortest history in which this seed's last day still has every case the pages show
# (accounts at risk, red activations, contacts gone quiet, the owner Ana Ruiz), with 28-day windows.
SPEC = SampleSpec(accounts=16, days=30, seed=3)
FIRST, LAST = dt.date(2026, 6, 1), dt.date(2026, 6, 30)
HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_OWNER = '"><img src=x onerror=alert(2)> & Co'
BIN = Path(sys.executable).parent


TWIN_OWNERS = ("Bob", "bob")


def hostile_sample(raw_dir: Path, spec: SampleSpec = SPEC) -> str:
    """The sample with one account named like a script and its owner like an HTML attribute
    break-out, and two accounts whose ids differ only in case, owned by TWIN_OWNERS (who do too);
    returns the first account's id."""
    generate_sample(raw_dir, spec)
    accounts = pd.read_parquet(raw_dir / "accounts.parquet")
    hostile, twin, other = accounts.index[accounts["status"] == "paying"][:3]
    accounts.loc[hostile, ["name", "owner"]] = [HOSTILE_NAME, HOSTILE_OWNER]
    accounts.loc[[twin, other], "owner"] = TWIN_OWNERS
    renamed = {accounts.loc[other, "account_id"]: accounts.loc[twin, "account_id"].lower()}
    for table in ("accounts", "users", "outcomes"):
        rows = pd.read_parquet(raw_dir / f"{table}.parquet") if table != "accounts" else accounts
        rows["account_id"] = rows["account_id"].replace(renamed)
        rows.to_parquet(raw_dir / f"{table}.parquet", index=False)
    return accounts.loc[hostile, "account_id"]


@pytest.fixture(scope="module")
def report_run(tmp_path_factory) -> tuple[Pipeline, str, object]:
    pipeline = Pipeline(tmp_path_factory.mktemp("report"))
    hostile = hostile_sample(pipeline.raw_dir)
    result = pipeline.run(FIRST, LAST)
    assert result.success, pipeline.failure_of(result)
    return pipeline, hostile, result


def site_of(pipeline: Pipeline, day: dt.date) -> Path:
    return report_root(pipeline.export_dir) / day.isoformat()


def page_of(pipeline: Pipeline, day: dt.date, folder: str, key) -> Path:
    """The page of an account id or an owner (`folder` "accounts" or "owners") in the site of `day`,
    named among the day's scored accounts or owners as the site names it."""
    column = {"accounts": "account_id", "owners": "owner"}[folder]
    keys = pipeline.query(f"SELECT DISTINCT {column} AS key FROM export.account_health WHERE snapshot_date = $d",
                          {"d": day}).key.tolist()
    return site_of(pipeline, day) / folder / f"{page_names(keys)[key]}.html"


def data_file(path: Path) -> dict:
    """The values a data file of a site sets, by name: its lines are `window.<name> = <JSON>;`."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, value = re.fullmatch(r"window\.(\w+) = (.*);", line).groups()
        values[name] = json.loads(value)
    return values


def owner_data(pipeline: Pipeline, day: dt.date, owner) -> dict:
    """The data file the owner page of `owner` and its accounts' pages are drawn from."""
    return data_file(site_of(pipeline, day) / "data" / f"{page_of(pipeline, day, 'owners', owner).stem}.js")


def account_data(pipeline: Pipeline, day: dt.date, account_id: str) -> dict:
    """What the page of `account_id` is drawn from, with its contacts as a dict each."""
    owner = pipeline.query("SELECT owner FROM export.account_health WHERE snapshot_date = $d AND account_id = $a",
                           {"d": day, "a": account_id}).owner[0]
    data = owner_data(pipeline, day, owner)
    account = next(a for a in data["REPORT_ACCOUNTS"]["accounts"] if a["account_id"] == account_id)
    columns = data["REPORT_CONTACTS"].get(account_id, {"contact": []})
    return account | {"contacts": [{name: values[i] for name, values in columns.items()}
                                   for i in range(len(columns["contact"]))]}


def test_a_run_reports_its_last_day_and_latest_points_at_it(report_run):
    pipeline, _, result = report_run
    root = report_root(pipeline.export_dir)
    assert sorted(p.name for p in root.iterdir()) == [LAST.isoformat(), "latest"]
    assert (root / "latest").resolve() == site_of(pipeline, LAST).resolve()
    meta = next(m.materialization.metadata for m in result.get_asset_materialization_events()
                if m.asset_key.to_user_string() == "morning_report")
    index = site_of(pipeline, LAST) / "index.html"
    assert meta["report"].value == str(index)
    assert meta["report_url"].value == index.as_uri()
    assert meta["reports_built"].value == LAST.isoformat()
    accounts, owners = pipeline.query(
        "SELECT count(*), count(DISTINCT owner) FROM export.account_health WHERE snapshot_date = $d",
        {"d": LAST}).iloc[0]
    metrics = len(list((site_of(pipeline, LAST) / "metrics").glob("*.html")))
    assert metrics == 7  # every metric the default scorecard bins, pulse_score the seventh
    assert meta["pages"].value == 1 + owners + accounts + metrics
    assert meta["pages"].value == len(list(site_of(pipeline, LAST).rglob("*.html")))
    assert meta["build_seconds"].value > 0 and meta["size_mb"].value > 0


def test_report_url_is_the_served_address_once_the_base_url_is_set(monkeypatch, tmp_path):
    """The UI cannot open a file:// link; with HEALTH_REPORT_BASE_URL, report_url is the site's address."""
    site = Site(LAST, tmp_path / "report" / LAST.isoformat(), 3, 10, 0.5)
    assert site_metadata([site], 1)["report_url"].value == site.index.as_uri()
    monkeypatch.setenv("HEALTH_REPORT_BASE_URL", "https://reports.example.test/health/")
    assert site_metadata([site], 1)["report_url"].value == f"https://reports.example.test/health/{LAST}/index.html"


def test_the_site_is_self_contained(report_run):
    """Every script, stylesheet and link is relative and inside the site; nothing names a host."""
    pipeline, _, _ = report_run
    site = site_of(pipeline, LAST)
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["'](https?:)?//""", text), page
        for target in re.findall(r"""(?:src|href)="([^"#]+)""", text):
            if target.startswith("data:"):
                continue
            assert (page.parent / html.unescape(target)).resolve().is_file(), (page, target)
    assert {p.name for p in (site / "assets").iterdir()} == {"vega.js", "charts.js", "report.js", "report.css"}
    owners = pipeline.query("SELECT DISTINCT owner FROM export.account_health WHERE snapshot_date = $d",
                            {"d": LAST}).owner
    assert {p.name for p in (site / "data").iterdir()} == {"accounts.js"} | {
        f"{page_of(pipeline, LAST, 'owners', owner).stem}.js" for owner in owners}


def test_every_name_from_the_data_is_escaped(report_run):
    pipeline, hostile, _ = report_run
    site = site_of(pipeline, LAST)
    pages = {p: p.read_text(encoding="utf-8") for p in site.rglob("*.html")}
    for page, text in pages.items():
        assert HOSTILE_NAME not in text and "<img src=x" not in text, page
    # The account page draws the name from its data as text (test_report_browser.py shows it does).
    data = owner_data(pipeline, LAST, HOSTILE_OWNER)["REPORT_ACCOUNTS"]
    assert data["owner"] == HOSTILE_OWNER and [a["account_name"] for a in data["accounts"]
                                               if a["account_id"] == hostile] == [HOSTILE_NAME]
    owner_page = page_of(pipeline, LAST, "owners", HOSTILE_OWNER)
    assert owner_page.name.startswith("img-src-x-onerror-alert-2-Co-")  # a safe file name for any owner
    assert f"<h1>{escape(HOSTILE_OWNER)}: your morning</h1>" in pages[owner_page]


def test_chart_data_is_json_that_cannot_close_its_script(report_run):
    pipeline, hostile, _ = report_run
    page = (site_of(pipeline, LAST) / "index.html").read_text(encoding="utf-8")
    blocks = re.findall(r'<script type="application/json">(.*?)</script>', page, flags=re.S)
    assert blocks
    for block in blocks:
        assert "<" not in block
        json.loads(block)


def test_the_portfolio_counts_match_the_sync_table(report_run):
    pipeline, _, _ = report_run
    text = (site_of(pipeline, LAST) / "index.html").read_text(encoding="utf-8")
    scored = pipeline.query("SELECT count(*) AS n FROM export.account_health WHERE snapshot_date = $d", {"d": LAST})
    assert f'<span class="kpi">{scored.n[0]:,}</span> accounts scored' in text
    bands = pipeline.query("""
        SELECT health_band, count(*) AS n FROM export.account_health
        WHERE snapshot_date = $d AND band_source = 'score' GROUP BY ALL
    """, {"d": LAST})
    for band, n in bands.itertuples(index=False):
        assert re.search(rf'band-{band}">{band.replace("_", " ")}</span> <span class="kpi">{n:,}</span>', text)


def test_an_owner_page_lists_its_accounts_at_risk_by_score_and_its_red_activations_apart(report_run):
    pipeline, _, _ = report_run
    owners = pipeline.query("""
        SELECT owner,
               coalesce(list(account_id ORDER BY arr DESC, account_id)
                            FILTER (WHERE band_source = 'score' AND health_band = 'at_risk'), []) AS at_risk,
               coalesce(list(account_id ORDER BY arr DESC, account_id)
                            FILTER (WHERE in_onboarding AND activation_status = 'red'), []) AS red
        FROM export.account_health WHERE snapshot_date = $d AND owner IS NOT NULL GROUP BY owner
    """, {"d": LAST})
    assert any(owners.at_risk.map(len)) and any(owners.red.map(len))
    for owner, at_risk, red in owners.itertuples(index=False):
        page = page_of(pipeline, LAST, "owners", owner).read_text(encoding="utf-8")
        for table, expected in (("at-risk", at_risk), ("activation-red", red)):
            listed = re.search(rf'<table class="sortable" id="{table}">(.*?)</table>', page, flags=re.S)
            assert (listed is not None) == bool(len(expected)), (owner, table)
            if listed:
                links = re.findall(r'href="\.\./accounts/([^"]+)\.html"', listed.group(1))
                assert links == [page_of(pipeline, LAST, "accounts", a).stem for a in expected], (owner, table)


def test_an_owner_page_has_a_card_per_account_in_the_one_ranking(report_run):
    pipeline, _, _ = report_run
    owner = "Ana Ruiz"
    expected = pipeline.query("""
        SELECT account_id FROM export.account_health WHERE snapshot_date = $d AND owner = $owner
        ORDER BY list_position(['healthy', 'neutral', 'at_risk'], health_band) DESC, health_score,
                 arr DESC NULLS LAST, account_id
    """, {"d": LAST, "owner": owner}).account_id.tolist()
    assert [a["account_id"] for a in owner_data(pipeline, LAST, owner)["REPORT_ACCOUNTS"]["accounts"]] == expected


def test_quiet_and_power_contacts_are_the_documented_ones(report_run):
    """Went quiet: no usage in the last 28 days, some in the 28 before; power: a power role that day."""
    pipeline, _, _ = report_run
    quiet = pipeline.query("""
        SELECT account_id, identity FROM export.contact_usage
        WHERE snapshot_date = $d AND usage_28d = 0 AND usage_prev_28d > 0
          AND account_id IN (SELECT account_id FROM export.account_health WHERE snapshot_date = $d)
    """, {"d": LAST})
    assert len(quiet), "the sample has contacts that went quiet"
    for account_id, identity in quiet.itertuples(index=False):
        contacts = account_data(pipeline, LAST, account_id)["contacts"]
        assert [c["went_quiet"] for c in contacts if c["contact"] == identity] == [True]


def test_a_card_counts_the_power_contacts_as_the_sync_table_does(report_run):
    pipeline, _, _ = report_run
    accounts = pipeline.query("""
        SELECT account_id, owner, power_contacts_active_28d, power_contacts_total FROM export.account_health
        WHERE snapshot_date = $d AND owner = 'Ana Ruiz'
    """, {"d": LAST})
    for account_id, _, active, total in accounts.itertuples(index=False):
        power = [c for c in account_data(pipeline, LAST, account_id)["contacts"] if c["is_power_contact"]]
        assert (len([c for c in power if c["usage_28d"]]), len(power)) == (active, total)


def test_a_move_in_what_changed_shows_the_pulse_and_the_tickets_beside_its_reason():
    """The owner page's moves table (the sample's moves have no pulse or ticket that day, so
    crafted rows): the same line as the account page, under the reason and not under what changed;
    nothing without either."""
    def account(account_id, **signals):
        return dict(account_id=account_id, account_name=account_id, pulse_sentiment=None, days_since_pulse=None,
                    open_tickets=0, open_high_priority_tickets=0) | signals

    def move(account_id, reason):
        return dict(account_id=account_id, from_band="healthy", to_band="at_risk", direction="worse",
                    health_score=40.0, score_delta_7d=-20.0, what_changed=f"{account_id} moved",
                    score_reason=reason)

    accounts = {"A": account("A", pulse_sentiment="red", days_since_pulse=3, open_tickets=2,
                             open_high_priority_tickets=1),
                "B": account("B", open_tickets=1), "C": account("C")}
    macros = _templates(Style()).get_template("macros.html").make_module(
        {"pages": {"accounts": {k: k for k in accounts}}})
    table = str(macros.moves_table([move(k, f"why {k}") for k in accounts], accounts, "../", "moves"))
    reasons = re.findall(r'<td class="reason">(.*?)</td>', table)
    assert reasons == [
        "A moved",
        'why A<br><span class="signals">CSM pulse <strong>red</strong>, 3 days ago · 2 open tickets, '
        '1 high priority</span>',
        "B moved",
        'why B<br><span class="signals">1 open ticket, 0 high priority</span>',
        "C moved",
        "why C"]


def test_report_days_are_the_runs_latest(monkeypatch, tmp_path):
    assert report_dates(FIRST, LAST, 1) == [LAST]
    assert report_dates(FIRST, LAST, 3) == [LAST - dt.timedelta(days=2), LAST - dt.timedelta(days=1), LAST]
    assert report_dates(LAST, LAST, 5) == [LAST]
    assert report_dates(FIRST, LAST, 0) == []


def test_health_report_days_builds_that_many_and_latest_never_moves_back(report_run, monkeypatch, tmp_path):
    pipeline, _, _ = report_run
    monkeypatch.setenv("HEALTH_REPORT_DAYS", "2")
    result = pipeline.run(LAST - dt.timedelta(days=4), LAST - dt.timedelta(days=2),
                          selection=["morning_report"])
    assert result.success, pipeline.failure_of(result)
    root = report_root(pipeline.export_dir)
    assert sorted(p.name for p in root.iterdir()) == [
        (LAST - dt.timedelta(days=3)).isoformat(), (LAST - dt.timedelta(days=2)).isoformat(), LAST.isoformat(),
        "latest"]
    assert os.readlink(root / "latest") == LAST.isoformat()  # an older day's report is not the latest


def test_rebuilding_a_day_replaces_its_site_whole(report_run):
    pipeline, _, _ = report_run
    site = site_of(pipeline, LAST)
    (site / "owners" / "stale.html").write_text("from an older build")
    with pipeline.warehouse.get_connection(read_only=True) as conn:
        from health_pipeline.scorecard.parser import load_config

        rebuilt = build_report(conn, load_config(), LAST, pipeline.export_dir)
    assert rebuilt.folder == site and not (site / "owners" / "stale.html").exists()
    assert [p.name for p in report_root(pipeline.export_dir).iterdir() if p.name.startswith(".")] == []


def test_a_copy_of_a_site_standing_at_latest_is_replaced_by_the_link(report_run, tmp_path):
    pipeline, _, _ = report_run
    export_dir = tmp_path / "exports"
    with pipeline.warehouse.get_connection(read_only=True) as conn:
        site = build_report(conn, load_config(), LAST, export_dir).folder
        latest = report_root(export_dir) / "latest"
        latest.unlink()
        shutil.copytree(site, latest)  # someone copied the site there
        assert build_report(conn, load_config(), LAST, export_dir).folder == site
    assert os.readlink(latest) == LAST.isoformat()
    assert sorted(p.name for p in export_dir.iterdir()) == ["report"]  # the copy went with the staging folder


def contents(path: Path) -> dict[str, bytes]:
    """Every file under `path` (or `path` itself) by its path, with its bytes."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(file): file.read_bytes() for file in files if file.is_file()}


@pytest.mark.parametrize("in_the_way", ["folder", "file"])
def test_anything_else_at_latest_stops_the_run_with_one_line_and_is_left_as_it_is(report_run, tmp_path, in_the_way):
    pipeline, _, _ = report_run
    other = Pipeline(tmp_path)
    other.root.mkdir(exist_ok=True)
    shutil.copyfile(pipeline.root / "warehouse.duckdb", other.root / "warehouse.duckdb")
    latest = report_root(other.export_dir) / "latest"
    if in_the_way == "folder":
        (latest / "assets").mkdir(parents=True)
        (latest / "index.html").write_text("my own page")
        (latest / "assets" / "report.css").write_text("body {}")
        (latest / "notes.txt").write_text("keep me")
        what = "a folder that is not a morning report (3 files, among them notes.txt)"
    else:
        latest.parent.mkdir(parents=True)
        latest.write_text("keep me")
        what = "a file"
    before = contents(latest)
    assert other.failure(LAST, LAST, selection=["morning_report"]) == (
        "ReportFolderError", f"{latest} is {what}, where the link to the newest report goes: move it elsewhere, "
                             "and the next run links report/latest to the newest report")
    assert contents(latest) == before
    assert sorted(p.name for p in report_root(other.export_dir).iterdir()) == ["latest"]  # nothing published


def test_the_cli_builds_a_past_day_without_running_the_pipeline(report_run, monkeypatch, capsys):
    pipeline, _, _ = report_run
    monkeypatch.setenv("HEALTH_WAREHOUSE", str(pipeline.root / "warehouse.duckdb"))
    monkeypatch.setenv("HEALTH_EXPORT_DIR", str(pipeline.export_dir))
    day = FIRST + dt.timedelta(days=20)
    assert cli.main(["report", "--date", day.isoformat()]) == 0
    index = site_of(pipeline, day) / "index.html"
    assert capsys.readouterr().out.startswith(f"morning report for {day}: {index.resolve()} (")
    assert index.exists()
    assert cli.main(["report", "--date", "2025-01-01"]) == 2
    assert capsys.readouterr().err == ("no account was scored on 2025-01-01: nothing to report (the sync table's "
                                       "days are the ones `health-pipeline run` covered)\n")


# Keys of every kind, often differing only in case, some named like a device or like a digest name.
KEYS = st.one_of(st.none(), st.text(max_size=70), st.text("aAbB-_ .é", max_size=5),
                 st.sampled_from(["CON", "nul", "Com1", "lpt9", "A1", "a1", "x" * 64, "x" * 65]))


def kept(key, keys) -> bool:
    """Whether `key` may be its own page's file name among `keys`: safe on every common file system
    and no other key spelled the same but for case."""
    return (key is not None and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key) is not None
            and re.fullmatch(r"(?i)con|prn|aux|nul|com[0-9]|lpt[0-9]", key) is None
            and [str(k).lower() for k in keys if k is not None].count(key.lower()) == 1)


@given(st.lists(KEYS, unique=True))
@example(["x y", page_names(["x y"])["x y"]])  # a key spelled like another's digest name
@example([None, "", "None", "null"])
def test_page_names_are_safe_file_names_distinct_whatever_the_case(keys):
    names = page_names(keys)
    assert list(names) == keys
    assert len({name.lower() for name in names.values()}) == len(keys)
    for key, name in names.items():
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,105}", name)
        assert re.fullmatch(r"(?i)con|prn|aux|nul|com[0-9]|lpt[0-9]", name) is None
        if kept(key, keys):
            assert name == key
        else:
            assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}-[0-9a-f]{64}", name)


@given(KEYS, KEYS)
def test_two_keys_get_file_names_that_differ_whatever_the_case(a, b):
    if a != b:
        names = page_names([a, b])
        assert names[a].lower() != names[b].lower()
        assert names[a] == a if kept(a, [a, b]) else len(names[a]) > 64


def test_ids_and_owners_that_differ_only_in_case_get_pages_of_their_own(report_run):
    """A1.html and a1.html would be one file where file names ignore case (macOS, Windows)."""
    pipeline, _, _ = report_run
    site = site_of(pipeline, LAST)
    twins = pipeline.query("""
        SELECT account_id, account_name, owner FROM export.account_health
        WHERE snapshot_date = $d AND owner IN ('Bob', 'bob') ORDER BY owner
    """, {"d": LAST})
    assert twins.owner.tolist() == list(TWIN_OWNERS) and twins.account_id.str.lower().nunique() == 1
    for folder, column in (("accounts", "account_id"), ("owners", "owner")):
        scored = pipeline.query(f"SELECT count(*) AS n FROM (SELECT DISTINCT {column} FROM export.account_health "
                                "WHERE snapshot_date = $d)", {"d": LAST}).n[0]
        assert len({page.name.lower() for page in (site / folder).iterdir()}) == scored, folder
    for account_id, name, owner in twins.itertuples(index=False):
        page = page_of(pipeline, LAST, "accounts", account_id)
        assert page.name not in (f"{account_id}.html", f"{account_id.lower()}.html")  # a digest name each
        assert account_data(pipeline, LAST, account_id)["page"] == page.stem
        owner_page = page_of(pipeline, LAST, "owners", owner).read_text(encoding="utf-8")
        assert f"<h1>{owner}: your morning</h1>" in owner_page
        assert f'href="../accounts/{page.name}"' in owner_page


def test_the_templates_are_compiled_once_and_kept_in_the_cache_for_the_next_process(monkeypatch, tmp_path):
    """Compiling the templates was half a second of every build, each in a process of its own: a
    fresh environment (as a new process makes) takes them compiled from the cache folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    compiled = []
    compile_source = jinja2.Environment.compile
    monkeypatch.setattr(jinja2.Environment, "compile",
                        lambda env, source, name=None, *args, **kwargs: compiled.append(name)
                        or compile_source(env, source, name, *args, **kwargs))

    def account_page() -> str:  # account.html extends base.html
        env = _templates.__wrapped__(Style())  # not the process's own, which holds them already
        return env.get_template("account.html").render(root="../", report_date=FIRST, config=None, components=(),
                                                       pages={}, accounts_by_id={})

    page = account_page()
    assert sorted(compiled) == ["account.html", "base.html"]
    assert len(list((tmp_path / "health_pipeline").glob("templates-*.cache"))) == 2
    compiled.clear()
    assert account_page() == page and compiled == []


def test_a_cache_folder_that_cannot_be_written_only_means_compiling_again(monkeypatch, tmp_path):
    (tmp_path / "health_pipeline").write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    env = _templates.__wrapped__(Style())
    assert env.get_template("account.html").render(root="../", report_date=FIRST, config=None, components=(),
                                                   pages={}, accounts_by_id={}).startswith("<!doctype html>")


def test_the_chart_specs_are_built_once_per_scorecard_and_kept_and_each_site_sets_its_first_day(
        monkeypatch, tmp_path):
    """Altair took most of a second to build the specs in each run's process; only the dated
    charts' first day changes from one day's site to the next."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    components, metrics = load_config().components, ("usage_28d",)
    first, later = dt.date(2026, 6, 1), dt.date(2026, 7, 15)
    expected = {day: chart_specs(day, components, metrics) for day in (first, later)}
    built = []
    day_free = charts.day_free_specs
    monkeypatch.setattr(charts, "day_free_specs", lambda *args: built.append(args) or day_free(*args))
    assert _chart_specs(first, components, metrics) == expected[first]
    assert _chart_specs(later, components, metrics) == expected[later]
    assert built == [(components, metrics)]  # the second site's came from the cache folder
    # Months count from 0 in Vega's utc(): 2026-06-01 and 2026-07-15.
    assert expected[first]["sparkline"]["params"] == [{"name": "first_day", "expr": "utc(2026, 5, 1)"}]
    assert expected[later]["account_components"]["params"] == [{"name": "first_day", "expr": "utc(2026, 6, 15)"}]
    assert "params" not in expected[later]["band_shares"]
    _chart_specs(later, components, ("usage_28d", "active_users_28d"))  # another scorecard's metrics
    assert built == [(components, metrics), (components, ("usage_28d", "active_users_28d"))]


def test_the_vega_bundle_is_taken_from_the_newest_site_or_the_cache_unless_vl_convert_changed(
        report_run, monkeypatch, tmp_path):
    pipeline, _, _ = report_run
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    newest = (report_root(pipeline.export_dir) / "latest" / "assets" / "vega.js").read_text(encoding="utf-8")
    assert newest.startswith(f"// Vega, Vega-Lite and vega-embed, bundled by vl-convert {vl_convert.__version__}\n")
    bundled = []
    monkeypatch.setattr(vl_convert, "javascript_bundle", lambda: bundled.append(1) or "/* bundle */")
    day = FIRST + dt.timedelta(days=15)  # a past day no other test builds

    def build() -> str:
        with pipeline.warehouse.get_connection(read_only=True) as conn:
            site = build_report(conn, load_config(), day, pipeline.export_dir)
        return (site.folder / "assets" / "vega.js").read_text(encoding="utf-8")

    try:
        assert build() == newest and bundled == []  # the same vl-convert: the newest site's copy
        monkeypatch.setattr(vl_convert, "__version__", "0.0.1")
        fresh = "// Vega, Vega-Lite and vega-embed, bundled by vl-convert 0.0.1\n/* bundle */"
        assert build() == fresh and bundled == [1]
        assert (tmp_path / "health_pipeline" / "vega-0.0.1.js").read_text(encoding="utf-8") == fresh
        # The newest site still holds the other version's bundle: this one comes from the cache.
        assert build() == fresh and bundled == [1]
    finally:
        shutil.rmtree(site_of(pipeline, day), ignore_errors=True)


def test_a_run_of_an_earlier_day_builds_the_newest_site_again_from_its_rescored_rows(report_run, tmp_path):
    """report/latest must show what the sync table holds: a run of an earlier day rescored every
    later day, so it builds the newest day's site again, and records that on its partition."""
    shared, _, _ = report_run  # a copy of the module's run, so the other tests' data stays as it was
    pipeline = Pipeline(tmp_path / "copy", instance=dg.DagsterInstance.ephemeral())
    shutil.copytree(shared.root, pipeline.root, symlinks=True)
    earlier, last = LAST - dt.timedelta(days=3), LAST
    # The earlier day's events of the busiest account's contacts are withdrawn: its 28-day usage
    # on the last day, and so its page, changes.
    events_file = pipeline.raw_dir / "all_events" / f"{earlier}.parquet"
    events = pd.read_parquet(events_file)
    users = pd.read_parquet(pipeline.raw_dir / "users.parquet")
    account = events.merge(users, on="user_id")["account_id"].mode()[0]
    events[~events["user_id"].isin(users.loc[users["account_id"] == account, "user_id"])].to_parquet(
        events_file, index=False)
    owner = pipeline.query("SELECT owner FROM export.account_health WHERE snapshot_date = $d AND account_id = $a",
                           {"d": last, "a": account}).owner[0]
    page = Path("data") / f"{page_of(pipeline, last, 'owners', owner).stem}.js"  # the account page's data
    before = (site_of(pipeline, last) / page).read_bytes()

    result = pipeline.materialize(earlier, earlier)

    after = (site_of(pipeline, last) / page).read_bytes()
    with pipeline.warehouse.get_connection(read_only=True) as conn:
        fresh = build_report(conn, load_config(), last, tmp_path / "fresh")
    assert after != before and after == (fresh.folder / page).read_bytes()
    assert os.readlink(report_root(pipeline.export_dir) / "latest") == last.isoformat()
    records = {day: record.asset_materialization.metadata
               for day, record in run_records(pipeline.instance, result.run_id, "morning_report").items()}
    assert sorted(records) == [earlier.isoformat(), last.isoformat()]
    assert records[earlier.isoformat()]["reports_built"].value == earlier.isoformat()
    assert "refreshed_by_the_run_of" not in records[earlier.isoformat()]
    assert records[last.isoformat()]["reports_built"].value == last.isoformat()
    assert records[last.isoformat()]["refreshed_by_the_run_of"].value == earlier.isoformat()
    assert records[last.isoformat()]["report"].value == str(site_of(pipeline, last) / "index.html")


def test_with_personal_data_hidden_no_page_shows_a_contacts_email_or_name(report_run, monkeypatch, tmp_path):
    pipeline, _, _ = report_run
    contacts = pipeline.query("SELECT DISTINCT user_id, identity FROM export.contact_usage WHERE snapshot_date = $d "
                              "AND identity IS NOT NULL", {"d": LAST})
    monkeypatch.setenv("HEALTH_REPORT_PERSONAL_DATA", "hide")
    with pipeline.warehouse.get_connection(read_only=True) as conn:
        site = build_report(conn, load_config(), LAST, tmp_path).folder
    text = "".join(page.read_text(encoding="utf-8") for page in site.rglob("*") if page.suffix in (".html", ".js"))
    assert len(contacts) and not [i for i in contacts.identity if i in text or str(escape(i)) in text]
    shown = [u for u in contacts.user_id if json.dumps(u) in text]
    assert shown, "contacts are listed by their user ids"


def test_arr_is_written_in_the_configured_currency(report_run, monkeypatch, tmp_path):
    pipeline, _, _ = report_run
    total = pipeline.query("SELECT sum(arr) AS arr FROM export.account_health WHERE snapshot_date = $d",
                           {"d": LAST}).arr[0]
    for currency, written in (("USD", f"${total:,.0f}"), ("EUR", f"€{total:,.0f}"), ("CHF", f"CHF {total:,.0f}")):
        monkeypatch.setenv("HEALTH_REPORT_CURRENCY", currency)
        with pipeline.warehouse.get_connection(read_only=True) as conn:
            site = build_report(conn, load_config(), LAST, tmp_path / currency).folder
        assert f'<span class="kpi">{written}</span> ARR' in (site / "index.html").read_text(encoding="utf-8")
    assert Style("USD").money(-1234.4, signed=True) == "−$1,234" and Style("GBP").money(0, signed=True) == "+£0"


@pytest.mark.slow  # starts health-pipeline in a process of its own, twice
def test_report_serve_serves_the_folder_on_localhost_until_stopped(report_run, tmp_path):
    pipeline, _, _ = report_run
    env = {**os.environ, "HEALTH_WAREHOUSE": str(pipeline.root / "warehouse.duckdb"),
           "HEALTH_EXPORT_DIR": str(pipeline.export_dir)}
    # Started with SIGTERM ignored, as a test worker that ran Dagster in a background shell hands it on.
    served = subprocess.Popen([str(BIN / "health-pipeline"), "report", "--serve", "--port", "0"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    try:
        line = served.stdout.readline()
        url = re.search(r" at (http://127\.0\.0\.1:\d+/latest/index\.html) ", line)[1]
        assert line.startswith(f"serving {report_root(pipeline.export_dir)} at {url} (this machine only")
        with urllib.request.urlopen(url, timeout=30) as response:
            assert f"<h1>Portfolio health on {LAST}</h1>" in response.read().decode()
        served.terminate()
        assert served.wait(timeout=30) == 0
    finally:
        served.kill()
    empty = {**env, "HEALTH_EXPORT_DIR": str(tmp_path / "none")}
    refused = subprocess.run([str(BIN / "health-pipeline"), "report", "--serve"], env=empty, capture_output=True,
                             text=True, timeout=120)
    assert (refused.returncode, refused.stderr) == (2, (
        f"no morning report at {tmp_path / 'none' / 'report' / 'latest'}: build one first (`health-pipeline report`, "
        "or `health-pipeline run`)\n"))


def test_every_chart_spec_is_valid_vega_lite():
    """chart_specs skips Altair's validation (most of a second a build), so it is checked here."""
    import jsonschema
    from altair.vegalite.v6.schema.core import load_schema

    config = load_config()
    specs = chart_specs(FIRST, config.components, ("usage_28d", "active_users_28d"))
    assert {"band_shares", "score_histogram", "sparkline", "account_score", "account_components",
            "metric:usage_28d"} <= set(specs)
    for name, spec in specs.items():
        jsonschema.validate(spec, load_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**specs["sparkline"], "mark": {"type": "no such mark"}}, load_schema())


def test_every_account_page_is_the_one_page_that_draws_its_account(report_run):
    """The pages keep their addresses (accounts/<name>.html) but are one page, which report.js fills
    in from the owner's data file that data/accounts.js names for its file name."""
    pipeline, _, _ = report_run
    site = site_of(pipeline, LAST)
    accounts = pipeline.query("SELECT account_id, owner FROM export.account_health WHERE snapshot_date = $d",
                              {"d": LAST})
    pages = {page_of(pipeline, LAST, "accounts", a) for a in accounts.account_id}
    assert pages == set((site / "accounts").iterdir())
    assert len({page.read_bytes() for page in pages}) == 1
    assert '<script src="../data/accounts.js"></script>' in next(iter(pages)).read_text(encoding="utf-8")
    assert data_file(site / "data" / "accounts.js")["REPORT_OWNER_PAGES"] == {
        page_of(pipeline, LAST, "accounts", a).stem: page_of(pipeline, LAST, "owners", o).stem
        for a, o in accounts.itertuples(index=False)}


def test_a_day_built_again_is_the_same_bytes_whatever_order_duckdbs_threads_give_its_rows(report_run, tmp_path):
    """The same rows give the same files, byte for byte, whatever order DuckDB's threads hand them
    over in: a site rebuilt from unchanged rows must not look changed to what copies or compares it
    (a sync to a static host, a browser's cache, a rerun's check)."""
    pipeline, _, _ = report_run
    with pipeline.warehouse.get_connection(read_only=True) as conn:
        conn.execute("SET threads = 16")
        sites = [build_report(conn, load_config(), LAST, tmp_path / str(build)).folder for build in range(5)]
    files = [{file.relative_to(site): file.read_bytes() for file in site.rglob("*") if file.is_file()}
             for site in sites]
    assert files[0] and all(built == files[0] for built in files[1:])
