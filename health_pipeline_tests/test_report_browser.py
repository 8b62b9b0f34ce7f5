"""The morning report in a real browser: Debian's Chromium driven by Playwright, offline.

Each test opens pages of the sample's report from disk and checks what a reader sees: charts
drawn, tables with the warehouse's counts, links that lead where they say, and no console error
and no request outside the site. Screenshots go to test-artifacts/report/ at 1280 and 390 px.

Without /usr/bin/chromium these tests are skipped, unless HEALTH_REQUIRE_BROWSER is set (as
.ci/run sets it), in which case they fail.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from health_pipeline.assets.morning_report.site import report_root
from health_pipeline_tests.conftest import Pipeline
from health_pipeline_tests.test_morning_report import (
    FIRST,
    HOSTILE_NAME,
    HOSTILE_OWNER,
    LAST,
    TWIN_OWNERS,
    hostile_sample,
    page_of,
)

CHROMIUM = Path(os.environ.get("HEALTH_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "report"
WIDTHS = (1280, 390)
pytestmark = pytest.mark.slow  # a real browser: left out of the quick subset

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
    hostile = hostile_sample(pipeline.raw_dir)
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

    def __init__(self, browser, url: str, width: int = WIDTHS[0]):
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
        if url.startswith("file://"):
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

    def close(self):
        self.context.close()


def visit(browser, url: str, width: int = WIDTHS[0]) -> Visit:
    return Visit(browser, url, width)


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
    for width in WIDTHS:
        v.page.set_viewport_size({"width": width, "height": 900})
        assert v.page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
        v.shoot("portfolio", width)
    v.close()


def money(value) -> str:
    return f"{value:,.0f}"


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
    for width in WIDTHS:
        v.page.set_viewport_size({"width": width, "height": 900})
        assert v.page.evaluate("document.documentElement.scrollWidth") <= width
        v.shoot("owner", width)

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
    for width in WIDTHS:
        v.page.set_viewport_size({"width": width, "height": 900})
        assert v.page.evaluate("document.documentElement.scrollWidth") <= width
        v.shoot("account", width)
    v.close()


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
