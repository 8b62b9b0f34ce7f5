"""CRM mappings: the accounts and outcomes read from a CRM's export in the CRM's own names.

The sample's accounts and outcomes written as a Salesforce export (Account.csv, Opportunity.csv:
API field names, Salesforce's picklist values) and as HubSpot's (companies/, deals.parquet:
internal property names and values, times as HubSpot writes them) give, through the shipped
mappings, the raw tables the same rows give in our names. Crafted rows hold the rules: a value
the map does not know is judged as it would be in our names, a missing column is named as the
CRM names it, and a bad mapping file is refused with every problem, one line each, at startup.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from health_pipeline.assets.raw_activity.asset import RAW_ACTIVITY_ASSETS
from health_pipeline.cli import main
from health_pipeline.resources import raw_source
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.sources import FolderSource, HeapS3Source
from health_pipeline.sources.crm_mappings import HERE, CrmMappingError, load_mapping
from health_pipeline_tests.conftest import Pipeline
from health_pipeline_tests.test_bad_input import DAY, NEXT, valid

SPEC = SampleSpec(accounts=12, days=60)  # paying, trial and churned accounts; renewals, expansions, churns
LAST = SPEC.end
SALESFORCE_MAPPING = HERE / "salesforce.yaml"
# What raw_activity makes of the CRM's tables, and the quarantine they feed.
CRM_RESULTS = {
    "raw.accounts": "SELECT * FROM raw.accounts ORDER BY account_id",
    "raw.account_history": "SELECT * FROM raw.account_history ORDER BY account_id, valid_from NULLS FIRST",
    "raw.outcomes": "SELECT * FROM raw.outcomes ORDER BY ALL",
    "raw.quarantine": "SELECT source_table, reason, source_row, row_json FROM raw.quarantine "
                      "WHERE source_table IN ('accounts', 'outcomes') ORDER BY ALL",
}

SALESFORCE_STATUS = {"paying": "Customer - Direct", "trial": "Trial", "churned": "Former Customer"}
SALESFORCE_OUTCOME = {"renewed": "Renewal", "expanded": "Upsell", "downgraded": "Existing Customer - Downgrade",
                      "churned": "Churn"}
HUBSPOT_STATUS = {"paying": "customer", "trial": "opportunity", "churned": "other"}
HUBSPOT_OUTCOME = {"renewed": "renewal", "expanded": "upsell", "downgraded": "downsell", "churned": "churn"}


def salesforce(accounts: pd.DataFrame, outcomes: pd.DataFrame, crm_dir: Path) -> None:
    """Account.csv and Opportunity.csv as a Salesforce export holds the rows: API field names,
    Salesforce's values (paying accounts split between the two customer Types, plans as picklist labels)."""
    status = ["Customer - Channel" if s == "paying" and i % 2 else SALESFORCE_STATUS[s]
              for i, s in enumerate(accounts["status"])]
    pd.DataFrame({
        "Id": accounts["account_id"], "Name": accounts["name"], "Owner.Name": accounts["owner"],
        "Plan__c": accounts["plan"].str.title(), "AnnualRevenue": accounts["arr"], "Industry": accounts["vertical"],
        "Customer_Since__c": accounts["customer_since"], "Type": status, "Churn_Date__c": accounts["churned_at"],
        "Renewal_Date__c": accounts["renewal_date"],
    }).to_csv(crm_dir / "Account.csv", index=False)
    pd.DataFrame({
        "AccountId": outcomes["account_id"], "CloseDate": outcomes["outcome_date"],
        "Type": outcomes["outcome"].map(SALESFORCE_OUTCOME), "Previous_ARR__c": outcomes["arr_before"],
        "Amount": outcomes["arr_after"], "Loss_Reason__c": outcomes["reason"],
    }).to_csv(crm_dir / "Opportunity.csv", index=False)


def hubspot(accounts: pd.DataFrame, outcomes: pd.DataFrame, crm_dir: Path) -> None:
    """companies/ (a connector's folder of parquet) and deals.parquet as HubSpot holds the rows:
    internal property names and values, and its datetimes as ISO text in UTC."""
    def iso(dates: pd.Series) -> pd.Series:
        return pd.to_datetime(dates).dt.strftime("%Y-%m-%dT00:00:00.000Z")

    (crm_dir / "companies").mkdir()
    pd.DataFrame({
        "hs_object_id": accounts["account_id"], "name": accounts["name"], "hubspot_owner_id": accounts["owner"],
        "plan": accounts["plan"], "annualrevenue": accounts["arr"], "industry": accounts["vertical"],
        "hs_lifecyclestage_customer_date": iso(accounts["customer_since"]),
        "lifecyclestage": accounts["status"].map(HUBSPOT_STATUS), "churn_date": accounts["churned_at"],
        "renewal_date": accounts["renewal_date"],
    }).to_parquet(crm_dir / "companies" / "part-00000.parquet", index=False)
    pd.DataFrame({
        "associated_company_id": outcomes["account_id"], "closedate": iso(outcomes["outcome_date"]),
        "dealtype": outcomes["outcome"].map(HUBSPOT_OUTCOME), "previous_arr": outcomes["arr_before"],
        "amount": outcomes["arr_after"], "closed_lost_reason": outcomes["reason"],
    }).to_parquet(crm_dir / "deals.parquet", index=False)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sample") / "raw"
    generate_sample(folder, SPEC)
    return folder


def crm_results(pipeline: Pipeline, queries: dict = CRM_RESULTS) -> dict:
    with duckdb.connect(str(pipeline.root / "warehouse.duckdb"), read_only=True) as conn:
        return {table: conn.execute(sql).fetchall() for table, sql in queries.items()}


def sample_accounts(sample: Path) -> pd.DataFrame:
    # The shipped mappings map no seats_purchased: neither side has it.
    return pd.read_parquet(sample / "accounts.parquet").drop(columns="seats_purchased")


@pytest.fixture(scope="module")
def in_our_names(sample, tmp_path_factory) -> dict:
    """The sample's CRM results read in our names, as the mappings read them: the CRM's own id
    is the account's id, and both columns hold it. Each CRM's export is held to the same."""
    accounts = sample_accounts(sample)
    ours = Pipeline(tmp_path_factory.mktemp("ours"))
    shutil.copytree(sample, ours.raw_dir)
    accounts.assign(crm_account_id=accounts["account_id"]).to_parquet(ours.raw_dir / "accounts.parquet", index=False)
    ours.materialize(LAST, LAST, selection=RAW_ACTIVITY_ASSETS)
    return crm_results(ours)


@pytest.mark.parametrize("crm, write", [("salesforce", salesforce), ("hubspot", hubspot)])
def test_a_crm_export_through_its_shipped_mapping_reads_as_the_same_rows_in_our_names(sample, in_our_names,
                                                                                       tmp_path, crm, write):
    accounts = sample_accounts(sample)
    outcomes = pd.read_parquet(sample / "outcomes.parquet")
    assert set(accounts["status"]) == {"paying", "trial", "churned"}
    assert set(outcomes["outcome"]) == {"renewed", "expanded", "churned"}

    crm_dir = shutil.copytree(sample, tmp_path / crm / "raw")
    for table in ("accounts.parquet", "outcomes.parquet"):
        (crm_dir / table).unlink()
    write(accounts, outcomes, crm_dir)
    theirs = Pipeline(tmp_path / crm, source=functools.partial(FolderSource, raw_dir=str(crm_dir), crm_mapping=crm))
    theirs.materialize(LAST, LAST, selection=RAW_ACTIVITY_ASSETS)

    assert len(in_our_names["raw.accounts"]) == SPEC.accounts and len(in_our_names["raw.outcomes"]) == len(outcomes)
    assert crm_results(theirs) == in_our_names


def crafted(pipeline: Pipeline) -> None:
    """The crafted export of test_bad_input (one account, two days), and more accounts: their users
    need none."""
    data = valid()
    data.accounts += [dict(data.accounts[0], account_id=account_id) for account_id in ("A2", "A3", "A4")]
    data.write(pipeline.raw_dir)


def salesforce_accounts(types: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"Id": [f"A{i}" for i in range(1, len(types) + 1)], "Name": "Acme", "Owner.Name": "Ana",
                         "Plan__c": "Growth", "AnnualRevenue": 50000.0, "Industry": "saas",
                         "Customer_Since__c": "2024-01-01", "Type": types})


def test_a_value_the_map_does_not_know_is_judged_as_in_our_names(tmp_path):
    """The value map translates Salesforce's values, matched trimmed and whatever their case; a
    value it does not know is read as written, and the column's own rule judges it as it does in
    our names: a status is kept whatever it is (lower-cased), an outcome must be one of four."""
    types = ["Customer - Direct", " former CUSTOMER ", "Prospect", "Trial"]
    opportunities = pd.DataFrame({"AccountId": ["A1", "A2", "A3", "A4"],
                                  "CloseDate": ["2026-06-30", "2026-07-01", "2026-07-02", "2026-07-03"],
                                  "Type": ["renewal", "Existing Customer - Downgrade", "New Business", "Churn"]})
    theirs = Pipeline(tmp_path / "salesforce")
    crafted(theirs)
    for table in ("accounts", "outcomes"):
        (theirs.raw_dir / f"{table}.parquet").unlink(missing_ok=True)
    salesforce_accounts(types).to_csv(theirs.raw_dir / "Account.csv", index=False)
    opportunities.to_csv(theirs.raw_dir / "Opportunity.csv", index=False)
    theirs.source = functools.partial(FolderSource, raw_dir=str(theirs.raw_dir), crm_mapping="salesforce")
    theirs.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)

    assert theirs.query("SELECT account_id, status FROM raw.accounts ORDER BY ALL").values.tolist() == [
        ["A1", "paying"], ["A2", "churned"], ["A3", "prospect"], ["A4", "trial"]]
    assert theirs.query("SELECT account_id, outcome FROM raw.outcomes ORDER BY ALL").values.tolist() == [
        ["A1", "renewed"], ["A2", "downgraded"], ["A4", "churned"]]
    unknown = theirs.query("SELECT source_table, reason, source_file, source_row, row_json FROM raw.quarantine")
    assert unknown.values.tolist() == [[
        "outcomes", "unknown_outcome", str(theirs.raw_dir / "Opportunity.csv"), 3,
        '{"account_id":"A3","outcome_date":"2026-07-02","outcome":"new business","arr_before":null,'
        '"arr_after":null,"reason":null}']]

    # The same rows in our names, the unknown values as the CRM wrote them, are judged the same way.
    ours = Pipeline(tmp_path / "ours")
    crafted(ours)
    pd.DataFrame({"account_id": ["A1", "A2", "A3", "A4"], "name": "Acme", "owner": "Ana", "plan": "Growth",
                  "arr": 50000.0, "vertical": "saas", "customer_since": "2024-01-01",
                  "status": ["paying", "churned", "Prospect", "trial"],
                  "crm_account_id": ["A1", "A2", "A3", "A4"]}).to_csv(ours.raw_dir / "accounts.csv",
                                                                                 index=False)
    (ours.raw_dir / "accounts.parquet").unlink()
    opportunities.rename(columns={"AccountId": "account_id", "CloseDate": "outcome_date", "Type": "outcome"}).assign(
        outcome=["renewed", "downgraded", "New Business", "churned"]).to_csv(ours.raw_dir / "outcomes.csv",
                                                                             index=False)
    ours.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert crm_results(theirs) == crm_results(ours)


def test_a_mapping_of_your_own_gives_a_constant_for_a_field_the_crm_lacks(tmp_path):
    """A copy of the Salesforce mapping whose plan is a constant, for an org without Plan__c: every
    account has it, read as a plan in the file would be (lower-cased). The optional Churn_Date__c the
    export lacks reads as missing, as an absent churned_at does in our names."""
    mapping = yaml.safe_load(SALESFORCE_MAPPING.read_text())
    del mapping["accounts"]["columns"]["plan"]
    mapping["accounts"]["constants"] = {"plan": "Standard"}
    (tmp_path / "ours.yaml").write_text(yaml.safe_dump(mapping))
    pipeline = Pipeline(tmp_path)
    crafted(pipeline)
    (pipeline.raw_dir / "accounts.parquet").unlink()
    salesforce_accounts(["Customer - Direct", "Trial"]).drop(columns="Plan__c").to_csv(
        pipeline.raw_dir / "Account.csv", index=False)
    pipeline.source = functools.partial(FolderSource, raw_dir=str(pipeline.raw_dir),
                                        crm_mapping=str(tmp_path / "ours.yaml"))
    pipeline.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert crm_results(pipeline, {"accounts": "SELECT account_id, plan, status, churned_at FROM raw.accounts "
                                              "ORDER BY ALL"}) == {
        "accounts": [("A1", "standard", "paying", None), ("A2", "standard", "trial", None)]}


def test_a_mapping_of_your_own_reads_the_signal_tables_and_seats_in_the_crms_names(tmp_path):
    """The Salesforce mapping plus a seats field on Account and a custom object of health checks
    (Health_Check__c) read as csm_pulse: the value map turns Salesforce's picklist into sentiments,
    and a value it does not know is judged as in our names (quarantined as unknown_sentiment)."""
    mapping = yaml.safe_load(SALESFORCE_MAPPING.read_text())
    mapping["accounts"]["columns"]["seats_purchased"] = "Licenses__c"
    mapping["csm_pulse"] = {"table": "Health_Check__c",
                            "columns": {"account_id": "Account__c", "pulse_date": "Check_Date__c",
                                        "sentiment": "Status__c", "author": "CreatedBy.Name"},
                            "values": {"sentiment": {"On Track": "green", "Watch": "yellow", "At Risk": "red"}}}
    (tmp_path / "ours.yaml").write_text(yaml.safe_dump(mapping))
    pipeline = Pipeline(tmp_path)
    crafted(pipeline)
    (pipeline.raw_dir / "accounts.parquet").unlink()
    salesforce_accounts(["Customer - Direct", "Trial"]).assign(Licenses__c=[10, None]).to_csv(
        pipeline.raw_dir / "Account.csv", index=False)
    pd.DataFrame({"Account__c": ["A1", "A2", "A2"], "Check_Date__c": ["2026-08-01", "2026-08-02", "2026-08-03"],
                  "Status__c": [" at risk ", "On Track", "Unsure"], "CreatedBy.Name": "Ana"}).to_csv(
        pipeline.raw_dir / "Health_Check__c.csv", index=False)
    pipeline.source = functools.partial(FolderSource, raw_dir=str(pipeline.raw_dir),
                                        crm_mapping=str(tmp_path / "ours.yaml"))
    pipeline.materialize(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS)
    assert crm_results(pipeline, {
        "seats": "SELECT account_id, seats_purchased FROM raw.accounts ORDER BY ALL",
        "pulses": "SELECT account_id, CAST(pulse_date AS VARCHAR), sentiment, note, author FROM raw.csm_pulse "
                  "ORDER BY ALL",
        "quarantine": "SELECT source_table, source_row, reason FROM raw.quarantine WHERE source_table = 'csm_pulse'",
    }) == {"seats": [("A1", 10.0), ("A2", None)],
           "pulses": [("A1", "2026-08-01", "red", None, "Ana"), ("A2", "2026-08-02", "green", None, "Ana")],
           "quarantine": [("csm_pulse", 3, "unknown_sentiment")]}


def write_parquet_folder(frame: pd.DataFrame, folder: Path, parts: int) -> None:
    folder.mkdir()
    for i in range(parts):
        frame.iloc[i::parts].to_parquet(folder / f"part-{i}.parquet", index=False)


@pytest.mark.parametrize("case", ["csv_lacks_a_column", "a_file_of_a_folder_lacks_a_column",
                                  "a_column_of_the_wrong_type", "no_table_of_the_crms_name"])
def test_the_crm_export_that_does_not_fit_the_mapping_is_refused_naming_the_crms_column(tmp_path, case):
    pipeline = Pipeline(tmp_path)
    crafted(pipeline)
    pipeline.source = functools.partial(FolderSource, raw_dir=str(pipeline.raw_dir), crm_mapping="salesforce")
    accounts = salesforce_accounts(["Customer - Direct", "Customer - Direct"])
    if case == "csv_lacks_a_column":
        path = pipeline.raw_dir / "Account.csv"
        accounts.drop(columns="AnnualRevenue").to_csv(path, index=False)
        expected = (f"Salesforce mapping: accounts needs the CRM's column 'AnnualRevenue' (→ arr), which {path} "
                    "lacks; it has customer_since__c, id, industry, name, owner.name, plan__c, type")
    elif case == "a_file_of_a_folder_lacks_a_column":
        write_parquet_folder(accounts, pipeline.raw_dir / "Account", parts=2)
        path = pipeline.raw_dir / "Account" / "part-1.parquet"
        pd.read_parquet(path).drop(columns=["Industry", "Type"]).to_parquet(path, index=False)
        expected = (f"Salesforce mapping: accounts needs the CRM's columns 'Industry' (→ vertical), 'Type' "
                    f"(→ status), which {path} lacks; it has annualrevenue, customer_since__c, id, name, "
                    "owner.name, plan__c")
    elif case == "a_column_of_the_wrong_type":
        path = pipeline.raw_dir / "Account.parquet"
        accounts.assign(AnnualRevenue=True).to_parquet(path, index=False)
        expected = (f"raw table 'accounts' ({path}) column 'AnnualRevenue' (→ arr) has type BOOLEAN, which cannot "
                    "be read as DOUBLE")
    else:  # the accounts in our names do not stand for the CRM's Account
        expected = (f"raw table 'accounts' not found in {pipeline.raw_dir}: expected Account.parquet, Account.csv "
                    "or a folder Account/ or Account.parquet/ of parquet files (the Salesforce mapping's accounts)")
    assert pipeline.failure(DAY, NEXT, selection=RAW_ACTIVITY_ASSETS) == ("RawInputError", expected)


BAD_MAPPING = """\
crm: Acme CRM
acounts: {}
accounts:
  table: Acme/Account
  colums: {}
  columns:
    account_id: Id
    name: Name
    owner: Owner.Name
    plan: Plan__c
    arrr: AnnualRevenue
    vertical: Industry
    customer_since: Customer_Since__c
    status: Type
  values:
    arr: {"1": one}
    status:
      Customer: paying
      " customer": trial
      yes: paying
  constants:
    name: Acme
    churned_at: "2020-01-01"
outcomes:
  table: Opportunity
  columns:
    account_id: AccountId
    outcome_date: CloseDate
    outcome: Type
  values:
    outcome:
      Won: renewd
"""


def test_a_bad_mapping_file_is_refused_at_startup_with_every_problem_on_a_line_of_its_own(tmp_path, monkeypatch,
                                                                                           capsys):
    path = tmp_path / "acme.yaml"
    path.write_text(BAD_MAPPING)
    accounts_columns = ("account_id, name, owner, plan, arr, vertical, customer_since, status, churned_at, "
                        "crm_account_id, renewal_date, seats_purchased")
    expected = [f"CRM mapping {path}: {problem}" for problem in [
        "acounts: is not a key here (crm, accounts, outcomes, csm_pulse, tickets, nps_responses, invoices); "
        "did you mean accounts?",
        "accounts.colums: is not a key here (table, columns, values, constants); did you mean columns?",
        "accounts.table: must name the CRM's table, a file or folder name such as Account",
        f"accounts.columns.arrr: is not a column of accounts ({accounts_columns}); did you mean arr?",
        "accounts.columns: maps nothing to arr, which accounts requires (name the CRM's column for each, or give "
        "a constant)",
        "accounts.constants.name: is also under columns: a column is read from the CRM or constant, not both",
        "accounts.constants.churned_at: a constant stands only for a text column "
        "(name, owner, plan, vertical, status, crm_account_id)",
        "accounts.values.arr: arr is not an enumeration; only plan, status take a value map",
        "accounts.values.status: 'Customer' and ' customer' are the same value (values match trimmed, whatever "
        "their case) mapped two ways",
        "accounts.values.status: the CRM's value True must be text (quote it)",
        "outcomes.values.outcome.Won: 'renewd' is not an outcome (renewed, churned, downgraded, expanded)",
    ]]
    with pytest.raises(CrmMappingError) as refused:
        load_mapping(str(path))
    assert str(refused.value).splitlines() == expected

    # At startup: `health-pipeline run` stops before reading anything, with those lines alone.
    monkeypatch.setenv("HEALTH_CRM_MAPPING", str(path))
    monkeypatch.setenv("HEALTH_RAW_DIR", str(tmp_path / "raw"))
    assert main(["run"]) == 2
    assert capsys.readouterr().err.splitlines() == expected


@pytest.mark.parametrize("text, problem", [
    ("crm: Acme\naccounts:\n  table: Account\n  table: Accounts\n", "line 4, column 3: the key 'table' is given twice"),
    ("crm: Acme\naccounts:\n  table: Account\n columns: {}\n", "line 4, column 2: expected <block end>, but found "
                                                                "'<block mapping start>'"),
    ("- crm: Acme\n", "<file>: must be a mapping with the keys crm, accounts, outcomes, csm_pulse, tickets, "
                    "nps_responses, invoices"),
    ("crm: Acme\n", "<file>: maps none of the CRM's tables (accounts, outcomes, csm_pulse, tickets, "
                  "nps_responses, invoices)"),
])
def test_a_mapping_file_that_is_not_a_mapping_is_refused_naming_why(tmp_path, text, problem):
    path = tmp_path / "acme.yaml"
    path.write_text(text)
    with pytest.raises(CrmMappingError) as refused:
        load_mapping(str(path))
    assert str(refused.value) == f"CRM mapping {path}: {problem}"


def test_a_mapping_that_is_neither_shipped_nor_a_file_is_refused_naming_the_shipped_ones():
    with pytest.raises(CrmMappingError) as refused:
        load_mapping("salesfroce")
    assert str(refused.value) == ("HEALTH_CRM_MAPPING='salesfroce' is neither a shipped CRM mapping (hubspot, "
                                  "salesforce) nor a file that can be read (No such file or directory)")


def test_every_source_the_settings_build_reads_the_crm_through_the_mapping(tmp_path, monkeypatch):
    crm_dir = tmp_path / "crm"
    crm_dir.mkdir()
    salesforce_accounts(["Customer - Direct"]).to_csv(crm_dir / "Account.csv", index=False)
    monkeypatch.setenv("HEALTH_CRM_MAPPING", "salesforce")
    monkeypatch.setenv("HEALTH_RAW_DIR", str(crm_dir))
    folder = raw_source(for_dagster=False)
    monkeypatch.setenv("HEALTH_SOURCE", "heap_s3")
    monkeypatch.setenv("HEALTH_RAW_DIR", str(tmp_path / "delivery"))
    monkeypatch.setenv("HEALTH_CRM_DIR", str(crm_dir))
    delivery = raw_source(for_dagster=False)
    assert (type(folder), type(delivery)) == (FolderSource, HeapS3Source)
    with duckdb.connect() as conn:
        for source in (folder, delivery):
            accounts = source.table(conn, "accounts")
            assert (accounts.path, accounts.crm.crm, accounts.source("arr")) == (
                str(crm_dir / "Account.csv"), "Salesforce", "AnnualRevenue")
            assert source.table(conn, "outcomes") is None  # no Opportunity export: no outcomes
