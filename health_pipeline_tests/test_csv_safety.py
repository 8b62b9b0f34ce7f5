"""CSV files a spreadsheet opens safely: a text cell that would run as a formula is prefixed with
a single quote (OWASP's advice on CSV injection); numbers stay numbers and parquet keeps the raw
values."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from health_pipeline.export_files import spreadsheet_safe
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline_tests.conftest import Pipeline

RISKY = {"name": '=HYPERLINK("http://example.invalid","click")', "owner": "@SUM(1+1)*cmd|' /C calc'!A0"}
DAY = dt.date(2026, 6, 10)


@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=8))
def test_only_cells_that_start_like_a_formula_change_and_only_by_a_leading_quote(values):
    safe = spreadsheet_safe(pa.table({"text": pa.array(values, pa.string())})).column("text").to_pylist()
    for before, after in zip(values, safe):
        if before is not None and before[:1] in ("=", "+", "-", "@", "\t", "\r"):
            assert after == "'" + before
        else:
            assert after == before


def test_numbers_are_never_quoted():
    table = pa.table({"delta": [-20.0, 5.0, None], "count": pa.array([-1, 0, 3], pa.int64()),
                      "text": ["-1", "a", None]})
    safe = spreadsheet_safe(table)
    assert safe.schema == table.schema
    assert safe.to_pydict() == {"delta": [-20.0, 5.0, None], "count": [-1, 0, 3], "text": ["'-1", "a", None]}


@pytest.mark.slow
def test_formula_names_are_neutralised_in_csv_and_kept_in_parquet(tmp_path):
    pipeline = Pipeline(tmp_path)
    generate_sample(pipeline.raw_dir, SampleSpec(accounts=6, days=10, seed=5))
    accounts = pd.read_parquet(pipeline.raw_dir / "accounts.parquet")
    paying = accounts.index[accounts["status"] == "paying"][0]
    accounts.loc[paying, list(RISKY)] = list(RISKY.values())
    accounts.to_parquet(pipeline.raw_dir / "accounts.parquet", index=False)
    account_id = accounts.loc[paying, "account_id"]
    pipeline.materialize(DAY - dt.timedelta(days=9), DAY)

    files = pipeline.export_dir / "account_health" / f"snapshot_date={DAY}"
    csv = pd.read_csv(f"{files}.csv", keep_default_na=False).set_index("account_id")
    parquet = pd.read_parquet(f"{files}.parquet").set_index("account_id")
    assert csv.loc[account_id, "account_name"] == "'" + RISKY["name"]
    assert csv.loc[account_id, "owner"] == "'" + RISKY["owner"]
    assert parquet.loc[account_id, "account_name"] == RISKY["name"]
    assert parquet.loc[account_id, "owner"] == RISKY["owner"]
    # Numbers, negative ones too, are written as numbers.
    numbers = pd.read_csv(f"{files}.csv").set_index("account_id")
    for column in ("arr", "health_score", "score_delta_7d", "usage_change_pct"):
        pd.testing.assert_series_equal(numbers[column], parquet[column], check_names=False, check_dtype=False)
    raw = open(f"{files}.csv", encoding="utf-8").read()
    assert "\n=" not in raw and ',"=' not in raw and ",=" not in raw and ",@" not in raw
