"""The morning report in a real browser: Debian's Chromium driven by Playwright, offline.

Each test opens pages of the sample's report from disk and checks what a reader sees: charts
drawn, tables with the warehouse's counts, links that lead where they say, and no console error
and no request outside the site. Screenshots go to test-artifacts/report/ at 1280 and 390 px.

Without /usr/bin/chromium these tests are skipped, unless HEALTH_REQUIRE_BROWSER is set (as
.ci/run sets it), in which case they fail.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from health_pipeline.assets.alerts.asset import with_links
from health_pipeline.assets.morning_report import forecast as forecast_module
from health_pipeline.assets.morning_report.site import build_report, report_root, report_server
from health_pipeline.sample import SampleSpec
from health_pipeline_tests.conftest import Pipeline
from health_pipeline_tests.test_morning_report import (
    HOSTILE_NAME,
    HOSTILE_OWNER,
    TWIN_OWNERS,
    hostile_sample,
    page_of,
)

CHROMIUM = Path(os.environ.get("HEALTH_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "report"
WIDTHS = (1280, 390)
pytestmark = pytest.mark.slow  # a real browser: left out of the quick subset
# Longer than test_morning_report's sample: the forecast needs outcomes the backtest can pair with
# a score 30 days before them.
SPEC = SampleSpec(accounts=16, days=45, seed=5)
FIRST, LAST = dt.date(2026, 6, 1), dt.date(2026, 7, 15)

# Chromium as the machine allows it: no sandbox as root, and none of its own background traffic.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-default-apps"]

if not CHROMIUM.exists():
    if os.environ.get("HEALTH_REQUIRE_BROWSER"):
        raise RuntimeError(f"HEALTH_REQUIRE_BROWSER is set but there is no browser at {CHROMIUM} "
                           "(apt-get install chromium)")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)", allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Pipeline, Path, str]:
    pipeline = Pipeline(tmp_path_factory.mktemp("browser"))
    hostile = hostile_sample(pipeline.raw_dir, SPEC)
    pipeline.materialize(FIRST, LAST)
    return pipeline, report_root(pipeline.export_dir) / "latest", hostile


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visit:
    """One page in a fresh context: everything the browser requested, logged or failed."""

    def __init__(self, browser, url: str, width: int = WIDTHS[0], site: str = "file://"):
        self.site = site  # where the site's own requests go: its folder, or the server serving it
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.requests, self.outside, self.problems, self.dialogs = [], [], [], []
        self.context.route("**/*", self._only_the_site)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type in ("error", "warning")
                     and self.problems.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(url)
        self.wait_for_charts()

    def _only_the_site(self, route):
        url = route.request.url
        self.requests.append(url)
        if url.startswith(self.site):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def wait_for_charts(self):
        charts = self.page.locator("figure[data-chart]").count()
        if charts:
            self.page.wait_for_function(
                "n => document.querySelectorAll('figure[data-chart] .chart-canvas svg').length >= n", arg=charts)

    def goto_link(self, text: str):
        self.page.get_by_role("link", name=text, exact=True).first.click()
        self.page.wait_for_load_state("load")
        self.wait_for_charts()

    def assert_clean(self):
        assert self.outside == [] and self.problems == [] and self.dialogs == []

    def charts(self) -> list[dict]:
        """Each chart's name and its drawn size."""
        return self.page.eval_on_selector_all("figure[data-chart]", """figures => figures.map(f => {
            const svg = f.querySelector('.chart-canvas svg');
            const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
            return {name: f.dataset.chart, width: box.width, height: box.height,
                    marks: svg ? svg.querySelectorAll('path, rect, line').length : 0};
        })""")

    def shoot(self, name: str, width: int):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}_{width}.png"), full_page=True)

    def fits_and_shoot(self, name: str):
        """At each of WIDTHS, the page needs no sideways scrolling; a screenshot of it at each."""
        for width in WIDTHS:
            self.page.set_viewport_size({"width": width, "height": 900})
            assert self.page.evaluate("document.documentElement.scrollWidth") <= width, f"{name} at {width} px"
            self.shoot(name, width)

    def close(self):
        self.context.close()


def visit(browser, url: str, width: int = WIDTHS[0], site: str = "file://") -> Visit:
    return Visit(browser, url, width, site)


def table_rows(page, selector: str) -> list[list[str]]:
    return page.eval_on_selector_all(f"{selector} tbody tr",
                                     "rows => rows.map(r => Array.from(r.cells, c => c.innerText.trim()))")


def test_the_portfolio_draws_its_charts_and_shows_the_warehouses_counts(site, browser):
    pipeline, latest, _ = site
    v = visit(browser, (latest / "index.html").as_uri())
    charts = v.charts()
    assert [c["name"] for c in charts] == ["band_shares", "score_histogram"]
    assert all(c["width"] > 100 and c["height"] > 100 and c["marks"] > 3 for c in charts), charts
    bands = dict(pipeline.query("""
        SELECT health_band, count(*) FROM export.account_health
        WHERE snapshot_date = $d AND band_source = 'score' GROUP BY ALL
    """, {"d": LAST}).itertuples(index=False))
    shown = {row[0]: int(row[1]) for row in table_rows(v.page, "#band-totals")}
    assert shown == {band.replace("_", " "): bands.get(band, 0) for band in ("healthy", "neutral", "at_risk")}
    owners = pipeline.query("""
        SELECT owner, count(*) AS n FROM export.account_health WHERE snapshot_date = $d GROUP BY ALL
    """, {"d": LAST})
    shown = {row[0]: int(row[1]) for row in table_rows(v.page, "#breakdown-owner")}
    assert shown == dict(owners.itertuples(index=False))
    v.assert_clean()
    v.fits_and_shoot("portfolio")
    v.close()


def money(value) -> str:
    """ARR as the report writes it in the default currency, USD."""
    return f"{'−' if value < 0 else ''}${abs(value):,.0f}"


def test_the_portfolio_lists_every_account_at_risk_by_its_score_and_the_red_activations_apart(site, browser):
    pipeline, latest, _ = site
    v = visit(browser, (latest / "index.html").as_uri())
    at_risk = pipeline.query("""
        SELECT coalesce(account_name, account_id) AS account, owner, arr, health_score, score_delta_7d
        FROM export.account_health WHERE snapshot_date = $d AND band_source = 'score' AND health_band = 'at_risk'
        ORDER BY health_score, arr DESC NULLS LAST, account_id
    """, {"d": LAST})
    red = pipeline.query("""
        SELECT coalesce(account_name, account_id) AS account, owner, arr FROM export.account_health
        WHERE snapshot_date = $d AND in_onboarding AND activation_status = 'red' ORDER BY arr DESC, account_id
    """, {"d": LAST})
    assert len(at_risk) and len(red), "the sample has accounts of both kinds"
    shown = table_rows(v.page, "#at-risk")
    assert [row[:4] for row in shown] == [[a.account, a.owner, money(a.arr), f"{a.health_score:.1f}"]
                                          for a in at_risk.itertuples()]
    assert [row[:3] for row in table_rows(v.page, "#activation-red")] == [
        [a.account, a.owner, money(a.arr)] for a in red.itertuples()]
    assert not set(at_risk.account) & set(red.account)  # never counted twice
    kpi = v.page.locator("#kpi-at-risk").inner_text()
    assert f"by health score: {len(at_risk)} accounts, {money(at_risk.arr.sum())} ARR" in kpi
    assert f"onboarding activation: {len(red)} accounts, {money(red.arr.sum())} ARR" in \
        v.page.locator("#kpi-activation-red").inner_text()
    heading = v.page.locator("#at-risk thead th").nth(2)  # ARR
    heading.click()
    heading.click()
    assert [row[2] for row in table_rows(v.page, "#at-risk")] == [money(a) for a in sorted(at_risk.arr, reverse=True)]
    v.assert_clean()
    v.close()


def test_links_lead_from_the_portfolio_to_an_owner_and_to_an_account(site, browser):
    pipeline, latest, _ = site
    owner = "Ana Ruiz"
    v = visit(browser, (latest / "index.html").as_uri())
    v.goto_link(owner)
    assert v.page.url.endswith(f"/owners/{page_of(pipeline, LAST, 'owners', owner).name}")
    assert v.page.locator("h1").inner_text() == f"{owner}: your morning"
    accounts = pipeline.query("""
        SELECT account_id, account_name FROM export.account_health WHERE snapshot_date = $d AND owner = $o
    """, {"d": LAST, "o": owner})
    assert v.page.locator("article.card").count() == len(accounts)
    sparklines = [c for c in v.charts() if c["name"] == "sparkline"]
    assert len(sparklines) == len(accounts) and all(c["width"] > 50 and c["height"] > 10 for c in sparklines)
    v.assert_clean()
    v.fits_and_shoot("owner")

    account_id, name = accounts.iloc[0]
    page = page_of(pipeline, LAST, "accounts", account_id)
    v.page.locator(f"#account-{page.stem} h3 a").click()
    v.page.wait_for_load_state("load")
    v.wait_for_charts()
    assert v.page.url.endswith(f"/accounts/{page.name}")
    assert v.page.locator("h1").inner_text() == name
    v.assert_clean()
    v.close()


def test_an_account_page_charts_90_days_and_lists_its_contacts(site, browser):
    pipeline, latest, _ = site
    account_id = pipeline.query("""
        SELECT account_id FROM export.account_health WHERE snapshot_date = $d AND band_changed IS NOT NULL
        ORDER BY contacts_total DESC, account_id LIMIT 1
    """, {"d": LAST}).account_id[0]
    v = visit(browser, page_of(pipeline, LAST, "accounts", account_id).as_uri())
    charts = {c["name"]: c for c in v.charts()}
    assert set(charts) == {"account_score", "account_components"}
    assert all(c["width"] > 100 and c["height"] > 100 and c["marks"] > 3 for c in charts.values()), charts
    # Dated from the site's first day (charts.on_day): the score runs to the report's day.
    x_axis = v.page.locator("figure[data-chart='account_score'] [aria-roledescription='axis']").first
    assert x_axis.get_attribute("aria-label").endswith(f"to {LAST:%B %d}")
    active, dormant = pipeline.query("""
        SELECT count(*) FILTER (WHERE usage_90d > 0 OR sessions_90d > 0),
               count(*) FILTER (WHERE usage_90d = 0 AND sessions_90d = 0)
        FROM export.contact_usage WHERE snapshot_date = $d AND account_id = $a
    """, {"d": LAST, "a": account_id}).iloc[0]
    assert active and len(table_rows(v.page, "#contacts")) == active
    if dormant:
        assert v.page.locator("#dormant-contacts").inner_text().startswith(
            f"No activity in the last 90 days ({dormant}):")
    changes = pipeline.query("""
        SELECT count(*) AS n FROM export.band_changes WHERE snapshot_date <= $d AND account_id = $a
    """, {"d": LAST, "a": account_id}).n[0]
    assert len(table_rows(v.page, "#band-history")) == changes
    v.assert_clean()
    v.fits_and_shoot("account")
    v.close()


def test_an_account_page_shows_the_pulse_and_the_tickets_the_sync_table_carries(site, browser):
    pipeline, _, _ = site
    rows = pipeline.query("""
        SELECT account_id, pulse_sentiment, days_since_pulse, open_tickets, open_high_priority_tickets
        FROM export.account_health WHERE snapshot_date = $d
    """, {"d": LAST})
    assert rows["pulse_sentiment"].notna().any() and (rows["open_tickets"] > 0).any()  # the sample has both
    for account_id, sentiment, days, tickets, high in rows.itertuples(index=False):
        v = visit(browser, page_of(pipeline, LAST, "accounts", account_id).as_uri())
        shown = v.page.locator("#signals").inner_html() if v.page.locator("#signals").count() else None
        v.assert_clean()
        v.close()
        parts = ([f"CSM pulse <strong>{sentiment}</strong>, {days} days ago"] if isinstance(sentiment, str) else []) \
            + ([f"{tickets} open ticket{'s' if tickets != 1 else ''}, {high} high priority"] if tickets else [])
        assert shown == (" · ".join(parts) or None), account_id


def test_a_metric_page_draws_the_bin_edges_and_counts_each_bin(site, browser):
    pipeline, latest, _ = site
    v = visit(browser, (latest / "metrics" / "usage_28d.html").as_uri())
    charts = v.charts()
    assert charts and all(c["width"] > 100 and c["marks"] > 3 for c in charts)
    accounts = dict(pipeline.query("""
        SELECT segment, count(*) AS n FROM export.account_health WHERE snapshot_date = $d GROUP BY ALL
    """, {"d": LAST}).itertuples(index=False))
    tables = v.page.eval_on_selector_all("table.bins", """tables => tables.map(t => ({
        caption: t.caption.innerText, counts: Array.from(t.tBodies[0].rows, r => Number(r.cells[2].innerText))}))""")
    assert len(tables) == len(charts)
    for table in tables:
        segment = table["caption"].rsplit(" in segment ", 1)[1]
        assert sum(table["counts"]) == accounts[segment], table  # every account in one bin, or missing
    v.assert_clean()
    for width in WIDTHS:
        v.page.set_viewport_size({"width": width, "height": 900})
        v.shoot("metric", width)
    v.close()


def test_a_sortable_table_sorts_by_the_clicked_column(site, browser):
    _, latest, _ = site
    v = visit(browser, (latest / "index.html").as_uri())
    heading = v.page.locator("#breakdown-vertical thead th").nth(1)
    heading.click()
    assert heading.get_attribute("aria-sort") == "ascending"
    counts = [int(row[1]) for row in table_rows(v.page, "#breakdown-vertical")]
    assert counts == sorted(counts)
    heading.click()
    counts = [int(row[1]) for row in table_rows(v.page, "#breakdown-vertical")]
    assert counts == sorted(counts, reverse=True)
    v.assert_clean()
    v.close()


def test_owners_and_accounts_that_differ_only_in_case_each_lead_to_their_own_page(site, browser):
    pipeline, latest, _ = site
    v = visit(browser, (latest / "index.html").as_uri())
    for owner in TWIN_OWNERS:
        v.goto_link(owner)
        assert v.page.locator("h1").inner_text() == f"{owner}: your morning"
        [(account_id, name)] = pipeline.query("""
            SELECT account_id, account_name FROM export.account_health WHERE snapshot_date = $d AND owner = $o
        """, {"d": LAST, "o": owner}).itertuples(index=False)
        v.goto_link(name)
        assert v.page.url.endswith(f"/accounts/{page_of(pipeline, LAST, 'accounts', account_id).name}")
        assert v.page.locator("h1").inner_text() == name
        assert account_id in v.page.locator("dl.facts").inner_text()
        v.goto_link("Portfolio")
    v.assert_clean()
    v.close()


def test_a_script_in_a_name_shows_as_text_and_never_runs(site, browser):
    pipeline, _, hostile = site
    v = visit(browser, page_of(pipeline, LAST, "accounts", hostile).as_uri())
    assert v.page.locator("h1").inner_text() == HOSTILE_NAME
    assert HOSTILE_OWNER in v.page.locator("dl.facts").inner_text()
    assert v.page.locator("img").count() == 0
    v.assert_clean()  # no alert() dialog either
    v.close()


def test_opening_the_site_copied_elsewhere_works(site, browser, tmp_path):
    """Self-contained: the day's folder alone, copied anywhere, still draws its charts."""
    _, latest, _ = site
    copy = shutil.copytree(latest.resolve(), tmp_path / "copy")
    v = visit(browser, (copy / "index.html").as_uri())
    assert all(c["width"] > 100 for c in v.charts())
    assert all(url.startswith(copy.as_uri()) for url in v.requests)
    v.assert_clean()
    v.close()


def nearest(days: int, leads: list[int]) -> int:
    return min(leads, key=lambda lead: (abs(lead - days), lead))


def test_renewals_and_the_forecast_are_the_ones_the_sync_table_and_the_backtest_give(site, browser, tmp_path,
                                                                                     monkeypatch):
    """The portfolio's renewals of the next 90 days, and the forecast's figures, against a
    computation of their own from export.account_health and export.backtest_bands. The sample's
    few outcomes calibrate no band at the shipped minimum, so the page says so; with a minimum of
    one outcome, the expected churned ARR is each renewal's ARR times its band's churn rate at the
    lead nearest its days to renewal."""
    pipeline, latest, _ = site
    renewing = pipeline.query("""
        SELECT account_id, coalesce(account_name, account_id) AS account, days_to_renewal AS days, arr,
               health_band AS band
        FROM export.account_health WHERE snapshot_date = $d AND days_to_renewal BETWEEN 0 AND 90
        ORDER BY days_to_renewal, arr DESC, account_id
    """, {"d": LAST})
    bands = pipeline.query("""
        SELECT lead_days, health_band, outcomes, churned FROM export.backtest_bands
        WHERE scorecard_version = $version
    """, {"version": pipeline.settings.scoring_version})  # the whole scorecard's version, as the report reads it
    assert len(renewing) and len(bands), "the sample renews accounts and has outcomes"
    leads = sorted(set(bands.lead_days))
    rates = {(r.lead_days, r.health_band): (r.outcomes, r.churned) for r in bands.itertuples()}

    def expected(minimum: int) -> float | None:
        calibrated = [a.arr * rates[key][1] / rates[key][0] for a in renewing.itertuples()
                      if (key := (nearest(a.days, leads), a.band)) in rates and rates[key][0] >= minimum]
        return sum(calibrated) if calibrated else None

    v = visit(browser, (latest / "index.html").as_uri())
    assert [row[0] for row in table_rows(v.page, "#renewals")] == renewing.account.tolist()
    assert [row[3] for row in table_rows(v.page, "#renewals")] == [f"{d:,}" for d in renewing.days]
    windows = {row[0]: row[1:3] for row in table_rows(v.page, "#renewal-windows")}
    for days in (30, 60, 90):
        within = renewing[renewing.days <= days]
        assert windows[f"{days} days"] == [str(len(within)), money(within.arr.sum())]
    at_risk = renewing[renewing.band == "at_risk"].arr.sum()
    assert v.page.locator("#forecast-naive").inner_text() == money(at_risk)
    shown = v.page.locator("#forecast-expected").inner_text()
    assert expected(10) is None and shown.startswith("No forecast: too few outcomes.")
    v.close()

    monkeypatch.setattr(forecast_module, "MIN_OUTCOMES", 1)
    with pipeline.warehouse.get_connection(read_only=True) as conn:
        calibrated = build_report(conn, pipeline.settings, LAST, tmp_path).folder
    v = visit(browser, (calibrated / "index.html").as_uri())
    assert v.page.locator("#forecast-expected").inner_text() == money(expected(1))
    low, high = (float(x.replace("$", "").replace(",", "").replace("−", "-"))
                 for x in v.page.locator("#forecast-interval").inner_text().split(" – "))
    assert 0 <= low <= round(expected(1)) <= high <= renewing.arr.sum()
    v.assert_clean()
    v.fits_and_shoot("portfolio_forecast")
    v.close()


def points_text(value) -> str:
    """A number as the sentences write it (_shared.sql's number): up to three decimals, or 'missing'."""
    return "missing" if value is None or pd.isna(value) else f"{round(float(value), 3):.10g}"


def what_changed(now: dict, before: dict, config) -> str:
    """What moved between two scored days, computed here from the sync table's component points:
    the components whose points changed, largest change first, ties in the scorecard's order (the
    sample's default scorecard is one scorecard, so each component bins one metric)."""
    metric = {c.name: c.metric for c in config.scorecard.components}
    moved = []
    for order, c in enumerate(config.components):
        after, earlier = now[f"{c}_points"], before[f"{c}_points"]
        if pd.isna(after) != pd.isna(earlier) or (not pd.isna(after) and after != earlier):
            shift = abs((0 if pd.isna(after) else after) - (0 if pd.isna(earlier) else earlier))
            moved.append((-shift, order, f"{c} {points_text(earlier)} → {points_text(after)} of "
                                         f"{points_text(now[f'{c}_points_possible'])} points ({metric[c]} "
                                         f"{points_text(before[f'{c}_value'])} → {points_text(now[f'{c}_value'])})"))
    return "; ".join(text for *_, text in sorted(moved)[:3])


def test_what_changed_is_the_components_whose_points_moved(site, browser):
    """The account pages of established accounts (banded by their score, so no activation colour
    or onboarding's end enters) scored on the last day, the day before and 7 days before say what
    moved: checked against the component points."""
    pipeline, latest, _ = site
    days = pipeline.query("SELECT * FROM export.account_health WHERE snapshot_date IN ($d, $d - 1, $d - 7)",
                          {"d": LAST})
    rows = {(r["account_id"], r["snapshot_date"].date()): r for r in days.to_dict("records")}
    moved = [account_id for (account_id, day) in rows if day == LAST and all(
        rows.get((account_id, LAST - dt.timedelta(days=ago)), {}).get("band_source") == "score" for ago in (0, 1, 7))]
    assert moved
    checked = 0
    for account_id in moved:
        v = visit(browser, page_of(pipeline, LAST, "accounts", account_id).as_uri())
        since = {ago: what_changed(rows[account_id, LAST], rows[account_id, LAST - dt.timedelta(days=ago)],
                                   pipeline.settings) or "nothing" for ago in (1, 7)}
        assert v.page.locator("p.changes").inner_text() == (
            f"What changed since yesterday: {since[1]}; over 7 days: {since[7]}.")
        checked += since[7] != "nothing"
        v.assert_clean()
        v.close()
    assert checked, "some account's points moved over the week"


def test_the_served_site_opens_and_an_alerts_link_leads_to_the_accounts_page(site, browser, monkeypatch):
    """health-pipeline report --serve's server, on 127.0.0.1: the newest site opens, charts drawn;
    with HEALTH_REPORT_BASE_URL set to its address, the link an alert carries opens the account's page."""
    pipeline, latest, hostile = site
    server = report_server(latest.parent, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        v = visit(browser, f"{address}/latest/index.html", site=address)
        assert v.page.locator("h1").inner_text() == f"Portfolio health on {LAST}"
        assert all(c["width"] > 100 for c in v.charts())
        v.goto_link("Ana Ruiz")
        assert v.page.locator("h1").inner_text() == "Ana Ruiz: your morning"
        v.assert_clean()
        v.close()

        # An alert of the account named like a script, whose page has a digest name.
        monkeypatch.setenv("HEALTH_REPORT_BASE_URL", address)
        alert = {"account_id": hostile, "snapshot_date": LAST, "crm_account_id": None}
        with pipeline.warehouse.get_connection(read_only=True) as conn:
            [linked] = with_links(conn, [alert])
        assert linked["report_url"] == f"{address}/{LAST}/accounts/{page_of(pipeline, LAST, 'accounts', hostile).name}"
        v = visit(browser, linked["report_url"], site=address)
        assert v.page.locator("h1").inner_text() == HOSTILE_NAME
        v.assert_clean()
        v.close()
    finally:
        server.shutdown()
        server.server_close()
