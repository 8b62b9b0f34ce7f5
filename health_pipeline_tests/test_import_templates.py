"""Import templates: `health-pipeline export --template T --date D` writes the CSV each CS tool's
importer expects, with its headers, its formats and its band labels, matched on its key."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from health_pipeline import cli, import_templates
from health_pipeline.import_templates import TemplateError, load_template
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.scorecard.parser import load_config
from health_pipeline_tests.conftest import Pipeline

DAY = dt.date(2026, 6, 20)


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Pipeline:
    pipeline = Pipeline(tmp_path_factory.mktemp("imports"), sparse=True)
    generate_sample(pipeline.raw_dir, SampleSpec(accounts=8, days=20, seed=3))
    accounts = pd.read_parquet(pipeline.raw_dir / "accounts.parquet")
    accounts.loc[0, "crm_account_id"] = None  # an account the CRM does not know yet
    accounts.loc[1, "name"] = "=cmd|' /C calc'!A0"
    accounts.to_parquet(pipeline.raw_dir / "accounts.parquet", index=False)
    pipeline.materialize(DAY - dt.timedelta(days=19), DAY)
    return pipeline


def export(pipeline: Pipeline, template: str, monkeypatch, capsys) -> tuple[pd.DataFrame, str]:
    monkeypatch.setenv("HEALTH_WAREHOUSE", str(pipeline.root / "warehouse.duckdb"))
    monkeypatch.setenv("HEALTH_EXPORT_DIR", str(pipeline.export_dir))
    assert cli.main(["export", "--template", template, "--date", DAY.isoformat()]) == 0
    path = pipeline.export_dir / "imports" / template / f"snapshot_date={DAY}.csv"
    return pd.read_csv(path, dtype=str, keep_default_na=False), capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("name", import_templates.names())
def test_each_template_writes_its_headers_and_only_rows_it_can_match(scored, monkeypatch, capsys, name):
    template = load_template(name, load_config())
    written, printed = export(scored, name, monkeypatch, capsys)
    assert list(written.columns) == [c.header for c in template.columns]
    sync = scored.query("SELECT * FROM export.account_health WHERE snapshot_date = $d ORDER BY account_id",
                        {"d": DAY})
    matched = sync[sync[template.match_source].notna()]
    assert written[template.match_on].tolist() == matched[template.match_source].tolist()
    assert len(matched) == len(sync) - (template.match_source == "crm_account_id")
    if len(matched) < len(sync):
        assert printed.endswith(f"; {len(sync) - len(matched)} accounts without crm_account_id left out\n")


@pytest.mark.slow
def test_formats_follow_the_tool(scored, monkeypatch, capsys):
    hubspot, _ = export(scored, "hubspot", monkeypatch, capsys)
    gainsight, _ = export(scored, "gainsight", monkeypatch, capsys)
    totango, _ = export(scored, "totango", monkeypatch, capsys)
    sync = scored.query("SELECT * FROM export.account_health WHERE snapshot_date = $d AND crm_account_id IS NOT NULL "
                        "ORDER BY account_id", {"d": DAY})
    assert set(hubspot["Health score date"]) == {"06/20/2026"}
    assert set(totango["Health Score Date"]) == {"2026-06-20"}
    assert hubspot["Health band"].tolist() == sync.health_band.map(
        {"healthy": "Healthy", "neutral": "Neutral", "at_risk": "At risk"}).tolist()
    assert gainsight["Health Band"].tolist() == sync.health_band.map(
        {"healthy": "Green", "neutral": "Yellow", "at_risk": "Red"}).tolist()
    assert [float(x) for x in hubspot["Health score"]] == sync.health_score.round(1).tolist()
    # Spreadsheet-safe like every export: a name that is a formula is text.
    assert "'=cmd|' /C calc'!A0" in hubspot["Company name"].tolist()


@pytest.mark.slow
def test_salesforce_text_fields_fit_their_length(scored, monkeypatch, capsys):
    salesforce, _ = export(scored, "salesforce", monkeypatch, capsys)
    assert salesforce["Health_Reason__c"].str.len().max() <= 255
    assert salesforce["Health_Top_Drag__c"].str.len().max() <= 80


def test_a_template_naming_a_column_the_sync_table_lacks_is_refused(tmp_path, monkeypatch):
    (tmp_path / "broken.yaml").write_text(
        "tool: X\nmatch_on: Id\ncolumns:\n  - {header: Id, from: account_id}\n  - {header: Y, from: no_such_column}\n")
    monkeypatch.setattr(import_templates, "HERE", tmp_path)
    with pytest.raises(TemplateError, match=r"broken.yaml: columns\[1\]: from 'no_such_column' is not a column"):
        load_template("broken", load_config())


def test_without_a_warehouse_the_commands_say_what_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HEALTH_WAREHOUSE", str(tmp_path / "none.duckdb"))
    for argv in (["report", "--date", "2026-06-20"], ["export", "--template", "hubspot", "--date", "2026-06-20"]):
        assert cli.main(argv) == 2
        expected = f"no warehouse at {tmp_path / 'none.duckdb'}: run `health-pipeline run` first\n"
        assert capsys.readouterr().err == expected
