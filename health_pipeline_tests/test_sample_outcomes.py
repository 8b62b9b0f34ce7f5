"""The sample's contract outcomes: where they fall, how churn stops an account, and the planted signal."""

from __future__ import annotations

import calendar
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from health_pipeline.sample import (
    CHURNING_STOPS_AT,
    CONTRACT_MONTHS,
    OUTCOME_WARMUP_DAYS,
    SampleSpec,
    _accounts,
    _outcomes,
    generate_sample,
)

SPEC = SampleSpec(accounts=40, days=100, seed=4)
# Large enough for rates to settle, small enough to generate in a few seconds.
BIG_SPEC = SampleSpec(accounts=300, days=150, seed=2)
OUTCOMES = {"renewed", "churned", "downgraded", "expanded"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("sample")
    generate_sample(raw, SPEC)
    return raw


@pytest.fixture(scope="module")
def big_sample(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("big")
    generate_sample(raw, BIG_SPEC)
    return raw


@pytest.fixture(scope="module")
def big(big_sample: Path) -> pd.DataFrame:
    """BIG_SPEC's accounts with their archetype, seat count and churn."""
    raw = big_sample
    accounts = pd.read_parquet(raw / "accounts.parquet")
    archetype = _accounts(np.random.default_rng(BIG_SPEC.seed), BIG_SPEC).set_index("account_id")["archetype"]
    users = pd.read_parquet(raw / "users.parquet")
    seats = users.dropna(subset=["account_id"]).groupby("account_id").size()
    accounts["archetype"] = accounts["account_id"].map(archetype)
    accounts["seats"] = accounts["account_id"].map(seats).fillna(0)
    accounts["churned"] = accounts["churned_at"].notna()
    outcomes = pd.read_parquet(raw / "outcomes.parquet")
    accounts["has_outcome"] = accounts["account_id"].isin(outcomes["account_id"])
    accounts.attrs["outcomes"] = outcomes.merge(accounts[["account_id", "plan", "seats"]], on="account_id")
    return accounts


def test_outcomes_are_deterministic_per_seed(tmp_path):
    spec = SampleSpec(accounts=15, days=50, seed=9)
    for name in ("a", "b"):
        generate_sample(tmp_path / name, spec)
    for table in ("outcomes.parquet", "accounts.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / table), pd.read_parquet(tmp_path / "b" / table))
    assert len(pd.read_parquet(tmp_path / "a" / "outcomes.parquet")) > 0
    generate_sample(tmp_path / "c", SampleSpec(accounts=15, days=50, seed=10))
    assert not pd.read_parquet(tmp_path / "a" / "outcomes.parquet").equals(
        pd.read_parquet(tmp_path / "c" / "outcomes.parquet"))


def test_outcomes_fall_inside_the_window_after_the_warm_up(sample: Path):
    outcomes = pd.read_parquet(sample / "outcomes.parquet")
    accounts = pd.read_parquet(sample / "accounts.parquet")
    assert list(outcomes.columns) == ["account_id", "outcome_date", "outcome", "arr_before", "arr_after", "reason"]
    assert len(outcomes) > 0
    first = SPEC.start + dt.timedelta(days=OUTCOME_WARMUP_DAYS)
    last = SPEC.start + dt.timedelta(days=SPEC.days - 1)
    assert outcomes["outcome_date"].between(first, last).all()
    assert set(outcomes["outcome"]) <= OUTCOMES
    assert set(outcomes["account_id"]) <= set(accounts["account_id"])
    # Trials have no contract yet.
    assert not set(outcomes["account_id"]) & set(accounts.loc[accounts["status"] == "trial", "account_id"])


def test_arr_moves_with_the_outcome(sample: Path):
    outcomes = pd.read_parquet(sample / "outcomes.parquet")
    accounts = pd.read_parquet(sample / "accounts.parquet").set_index("account_id")
    change = outcomes["arr_after"] / outcomes["arr_before"]
    by = outcomes["outcome"]
    assert (change[by == "renewed"] == 1).all()
    assert change[by == "expanded"].between(1.1 - 1e-6, 1.4 + 1e-6).all()
    assert change[by == "downgraded"].between(0.5 - 1e-6, 0.8 + 1e-6).all()
    assert (outcomes.loc[by == "churned", "arr_after"] == 0).all()
    # Each account starts from its ARR and carries every outcome's ARR to the next.
    for account_id, path in outcomes.groupby("account_id"):
        assert path["arr_before"].iloc[0] == accounts.at[account_id, "arr"]
        assert (path["arr_before"].iloc[1:].to_numpy() == path["arr_after"].iloc[:-1].to_numpy()).all()
    # Churns and downgrades say why; renewals and expansions do not.
    assert outcomes.loc[by.isin(["churned", "downgraded"]), "reason"].notna().all()
    assert outcomes.loc[by.isin(["renewed", "expanded"]), "reason"].isna().all()


def test_a_churned_account_ends_there(sample: Path):
    outcomes = pd.read_parquet(sample / "outcomes.parquet")
    accounts = pd.read_parquet(sample / "accounts.parquet").set_index("account_id")
    churns = outcomes[outcomes["outcome"] == "churned"].set_index("account_id")["outcome_date"]
    assert churns.index.is_unique and len(churns) > 0
    # No outcome after an account's churn.
    later = outcomes["account_id"].map(churns)
    assert not (outcomes["outcome_date"] > later).any()
    # Every churned account, and only those, has status 'churned' and its churn date.
    assert set(accounts.index[accounts["status"] == "churned"]) == set(churns.index)
    assert (accounts.loc[churns.index, "churned_at"] == churns).all()
    assert accounts.loc[~accounts.index.isin(churns.index), "churned_at"].isna().all()
    assert set(accounts["status"]) <= {"paying", "trial", "churned"}


def test_churned_accounts_users_stop_on_the_churn_date(sample: Path):
    accounts = pd.read_parquet(sample / "accounts.parquet")
    users = pd.read_parquet(sample / "users.parquet")
    account_of = users.set_index("user_id")["account_id"]
    # Anonymous users belong to the account of the user they merge into.
    migrations = pd.read_parquet(sample / "user_migrations.parquet")
    account_of = pd.concat([account_of.dropna(), migrations.set_index("from_user_id")["to_user_id"].map(account_of)])
    churned_at = accounts.dropna(subset=["churned_at"]).set_index("account_id")["churned_at"]
    for table in ("sessions", "all_events"):
        rows = pd.read_parquet(sample / table)
        stop = pd.to_datetime(rows["user_id"].map(account_of).map(churned_at))
        assert stop.notna().any(), table  # churned accounts had activity before their churn
        assert not (rows["time"].dt.tz_localize(None).dt.normalize() >= stop).any(), table


@pytest.mark.slow
def test_contracts_renew_every_three_months_whatever_the_plan(big_sample: Path):
    outcomes = pd.read_parquet(big_sample / "outcomes.parquet")
    accounts = pd.read_parquet(big_sample / "accounts.parquet").set_index("account_id")
    # Churning accounts may cancel between contract dates.
    renewals = outcomes[outcomes["reason"] != "cancelled"].join(accounts[["plan", "customer_since"]], on="account_id")
    for row in renewals.itertuples():
        since, date = row.customer_since, row.outcome_date
        months = (date.year - since.year) * 12 + date.month - since.month
        assert months > 0 and months % CONTRACT_MONTHS[row.plan] == 0, row
        month_end = calendar.monthrange(row.outcome_date.year, row.outcome_date.month)[1]
        assert row.outcome_date.day == min(row.customer_since.day, month_end), row
    gaps = renewals.groupby("account_id")["outcome_date"].agg(
        lambda dates: [(b - a).days for a, b in zip(dates.iloc[:-1], dates.iloc[1:])])
    gaps = gaps.explode().dropna()
    assert len(gaps) and gaps.between(89, 92).all()


def test_default_sample_has_enough_outcomes_to_backtest():
    spec = SampleSpec()
    outcomes = _outcomes(spec, _accounts(np.random.default_rng(spec.seed), spec))
    counts = outcomes["outcome"].value_counts()
    assert counts.get("churned", 0) >= 6
    assert counts.get("churned", 0) + counts.get("renewed", 0) >= 25


@pytest.mark.slow
def test_decline_drives_churn(big: pd.DataFrame):
    declining = big[big["archetype"].isin(["declining", "churning"])]
    healthy = big[big["archetype"].isin(["steady", "growing"])]
    assert declining["churned"].mean() > 0.6
    assert healthy["churned"].mean() < 0.2
    assert declining["churned"].mean() > 4 * healthy["churned"].mean()
    # Every churning account churns inside the window, after its usage stopped.
    churning = big[big["archetype"] == "churning"]
    stopped = BIG_SPEC.start + dt.timedelta(days=int(np.ceil(CHURNING_STOPS_AT * (BIG_SPEC.days - 1))))
    assert churning["churned"].all() and (churning["churned_at"] >= stopped).all()


@pytest.mark.slow
def test_seats_carry_no_signal(big: pd.DataFrame):
    """Loose checks: the fate never reads seats, so churned and retained accounts have similar seat counts."""
    churned = big.loc[big["churned"], "seats"].mean()
    retained = big.loc[~big["churned"] & big["has_outcome"], "seats"].mean()
    assert 0.67 < churned / retained < 1.5
    # Within a plan, where the contract cadence is the same, outcomes do not lean on seats.
    outcomes = big.attrs["outcomes"]
    for plan in ("starter", "growth"):
        of_plan = outcomes[outcomes["plan"] == plan]
        is_churn = of_plan["outcome"] == "churned"
        assert 0.75 < of_plan.loc[is_churn, "seats"].mean() / of_plan.loc[~is_churn, "seats"].mean() < 1.33, plan
