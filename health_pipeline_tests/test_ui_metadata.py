"""What the Dagster UI shows for each materialization: row count, column schema, description, previews."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from health_pipeline.assets.account_health.asset import score_preview
from health_pipeline.assets.score_backtest.asset import BACKTEST_ASSETS
from health_pipeline.definitions import build_assets
from health_pipeline.engines import EventEngine
from health_pipeline.partitions import partition_range_tags
from health_pipeline.previews import markdown_table
from health_pipeline.resources import ExportTarget, PostgresTarget, Warehouse
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.scorecard.model import BANDS
from health_pipeline.scorecard.parser import load_config
from health_pipeline.sources import FolderSource

DAY = dt.date(2026, 7, 1)
# CommonMark with GFM's tables and strikethrough, as the UI renders a markdown value.
MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def rendered_rows(markdown: str) -> list[list[str]]:
    """The text of each body cell of the markdown's table, as a CommonMark renderer shows it;
    fails if a cell renders as anything but plain text (a link, an image, emphasis, code, HTML)."""
    rows, in_body = [], False
    for token in MARKDOWN.parse(markdown):
        in_body = token.type == "tbody_open" or (in_body and token.type != "tbody_close")
        if in_body and token.type == "tr_open":
            rows.append([])
        if in_body and token.type == "inline":
            assert [child.type for child in token.children] in ([], ["text"]), token.children
            rows[-1].append(token.children[0].content if token.children else "")
    return rows


def test_score_preview_lists_the_riskiest_accounts_and_each_band():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA raw; CREATE SCHEMA core")
    conn.execute("CREATE TABLE raw.account_history (account_id VARCHAR, name VARCHAR, owner VARCHAR, arr DOUBLE, "
                 "valid_from DATE, valid_to DATE)")
    conn.execute("""INSERT INTO raw.account_history VALUES ('A', 'Acme | EU', 'Ana', 12000.4, NULL, NULL),
                    ('B', 'Beta', 'Ben', 900, NULL, NULL), ('C', 'Cobalt', 'Ana', 50000, NULL, NULL),
                    ('D', 'Delta', 'Ben', 1, NULL, '2026-07-01'), ('D', 'Delta', 'Ben', 70000, '2026-07-01', NULL)""")
    conn.execute("CREATE TABLE core.account_health (snapshot_date DATE, account_id VARCHAR, segment VARCHAR, "
                 "health_score DOUBLE, health_band VARCHAR, band_source VARCHAR, score_reason VARCHAR)")
    conn.execute("""INSERT INTO core.account_health VALUES
        ('2026-07-01', 'A', 'default', 20.0, 'at_risk', 'score', ''),
        ('2026-07-01', 'B', 'default', 20.0, 'at_risk', 'score', ''),
        ('2026-07-01', 'C', 'default', 55.5, 'neutral', 'score', ''),
        ('2026-07-01', 'D', 'default', 90.0, 'healthy', 'score', ''),
        ('2026-07-01', 'E', 'default', 95.0, 'at_risk', 'activation', ''),
        ('2026-06-30', 'D', 'default', 5.0, 'at_risk', 'score', '')""")  # another day: not in the preview
    conn.execute("INSERT INTO raw.account_history VALUES ('E', 'Echo', 'Ana', 100, NULL, NULL)")
    preview = {key: value.value for key, value in score_preview(conn, DAY).items()}
    # the worst band first, then the lowest score; equal scores: the larger ARR first. E is at_risk by its
    # onboarding activation, whatever its score.
    assert preview["most_at_risk"] == "\n".join([
        "**The 5 accounts most at risk on 2026-07-01** (by band, worst first, then by score, then by ARR; "
        "band_source `activation`: an onboarding account banded by its activation)",
        "",
        "| account_id | account | owner | arr | segment | health_score | health_band | band_source |",
        "|---|---|---|---|---|---|---|---|",
        "| A | Acme \\| EU | Ana | 12,000 | default | 20.0 | at\\_risk | score |",
        "| B | Beta | Ben | 900 | default | 20.0 | at\\_risk | score |",
        "| E | Echo | Ana | 100 | default | 95.0 | at\\_risk | activation |",
        "| C | Cobalt | Ana | 50,000 | default | 55.5 | neutral | score |",
        "| D | Delta | Ben | 70,000 | default | 90.0 | healthy | score |",
    ])
    assert preview["score_distribution"] == "\n".join([
        "**Scores per band on 2026-07-01** (an onboarding account's band comes from its activation, so its score "
        "can lie outside its band's cut-offs: `banded by activation` counts them)",
        "",
        "| band | accounts | % of accounts | banded by activation | lowest | median | highest |",
        "|---|---|---|---|---|---|---|",
        "| at\\_risk | 3 | 60.0 | 1 | 20.0 | 20.0 | 95.0 |",
        "| neutral | 1 | 20.0 | 0 | 55.5 | 55.5 | 55.5 |",
        "| healthy | 1 | 20.0 | 0 | 90.0 | 90.0 | 90.0 |",
    ])


def test_a_name_in_a_preview_shows_as_written_on_one_row():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA raw; CREATE SCHEMA core")
    conn.execute("CREATE TABLE raw.account_history (account_id VARCHAR, name VARCHAR, owner VARCHAR, arr DOUBLE, "
                 "valid_from DATE, valid_to DATE)")
    name = ("[Pay here](https://evil.example) ![logo](https://evil.example/x.png) **Big** _Co_ `x` "
            "<b>bold</b> &amp; ~~old~~ www.evil.example\nsecond line | 7 | cells\r\ttabbed \\*")
    conn.execute("INSERT INTO raw.account_history VALUES ('A', $name, '*Ana*', 10, NULL, NULL)", {"name": name})
    conn.execute("CREATE TABLE core.account_health (snapshot_date DATE, account_id VARCHAR, segment VARCHAR, "
                 "health_score DOUBLE, health_band VARCHAR, band_source VARCHAR, score_reason VARCHAR)")
    conn.execute("INSERT INTO core.account_health VALUES ('2026-07-01', 'A', '<seg>', 20.0, 'at_risk', 'score', '')")
    assert rendered_rows(score_preview(conn, DAY)["most_at_risk"].value) == [[
        "A",
        "[Pay here](https://evil.example) ![logo](https://evil.example/x.png) **Big** _Co_ `x` <b>bold</b> &amp; "
        "~~old~~ www.evil.example second line | 7 | cells  tabbed \\*",
        "*Ana*", "10", "<seg>", "20.0", "at_risk", "score"]]


@given(st.text())
def test_any_text_in_a_markdown_table_renders_as_itself_in_its_cell(text):
    one_line = "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029" else c for c in text)
    assert rendered_rows(markdown_table(["before", "text", "after"], [(1, text, "end")])) == [
        ["1", one_line.strip(), "end"]]


@pytest.fixture(scope="module")
def sample_result(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    generate_sample(root / "raw", SampleSpec(accounts=8, days=12, seed=2))
    settings = load_config()
    return dg.materialize(
        build_assets(settings),
        resources={"warehouse": Warehouse(database=str(root / "warehouse.duckdb")),
                   "raw_source": FolderSource(raw_dir=str(root / "raw")),
                   "export_target": ExportTarget(export_dir=str(root / "exports")),
                   "postgres": PostgresTarget(), "engine": EventEngine()},
        tags=partition_range_tags(dt.date(2026, 6, 1), dt.date(2026, 6, 12)),
        instance=dg.DagsterInstance.ephemeral(),
    )


def test_every_asset_shows_row_count_column_schema_and_description(sample_result):
    latest = {}  # per asset: the run's last day's record
    health_days = {}  # account_health: each partition's record
    for event in sample_result.get_asset_materialization_events():
        latest[event.asset_key.to_user_string()] = event.materialization.metadata
        if event.asset_key == dg.AssetKey("account_health"):
            assert event.partition not in health_days, "one record per partition"
            health_days[event.partition] = event.materialization.metadata
    # Each partition's record shows its own day's rows and bands, and the run's totals by name.
    assert sorted(health_days) == [f"2026-06-{day:02d}" for day in range(1, 13)]
    rows = {day: metadata["dagster/row_count"].value for day, metadata in health_days.items()}
    for metadata in health_days.values():
        assert metadata["rows_in_run"].value == sum(rows.values())
        assert sum(metadata[f"accounts_{band}"].value for band in BANDS if f"accounts_{band}" in metadata) == \
            metadata["dagster/row_count"].value
        assert "per_day" not in metadata
    assert len(set(rows.values())) > 1  # the days differ, so a day cannot be showing another's count
    # The run's other metadata (here the previews of its last day) is on its last day's record only.
    assert "most_at_risk" not in health_days["2026-06-01"] and "most_at_risk" in health_days["2026-06-12"]
    assets = {key.to_user_string(): a for a in build_assets(load_config()) for key in a.keys}
    assert set(latest) == set(assets)
    assert latest["postgres_sync"]["skipped"].value.startswith("HEALTH_SYNC_POSTGRES_URL is not set")
    for asset, metadata in latest.items():
        if asset == "morning_report":  # files, not a table: what it built instead
            assert metadata["pages"].value > 0 and metadata["report"].value.endswith("/2026-06-12/index.html")
            continue
        # Twelve days hold no outcome past the sample's warm-up, so there is nothing to backtest.
        if asset == "postgres_sync":  # no PostgreSQL configured: nothing synced
            assert metadata["dagster/row_count"].value == 0
            continue
        if asset in ("outcomes", *BACKTEST_ASSETS):
            assert metadata["dagster/row_count"].value == 0, asset
        elif asset not in ("alerts", "band_changes"):  # the last day may move no account
            assert metadata["dagster/row_count"].value > 0, asset
        assert metadata["dagster/column_schema"].schema.columns, asset
    for name, asset in assets.items():
        # every description says what one row (or, for the report, one site) means
        description = asset.descriptions_by_key[dg.AssetKey(name)].lower()
        assert "one row" in description or (name == "morning_report" and "one static site" in description), name
    assert latest["backtest_summary"]["summary"].value.startswith("**No outcomes to backtest.**")
    preview = latest["account_health"]
    assert preview["most_at_risk"].value.startswith("**The 8 accounts most at risk on 2026-06-12** (by band")
    assert preview["score_distribution"].value.startswith("**Scores per band on 2026-06-12**")


def test_every_check_passes_on_the_sample(sample_result):
    evaluations = sample_result.get_asset_check_evaluations()
    assert len(evaluations) == 13  # every check of every asset
    assert [e.check_name for e in evaluations if not e.passed] == []
