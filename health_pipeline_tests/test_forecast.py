"""The renewals' forecast (morning_report/forecast.py): which renewals it counts, the churn rate
each takes from the backtest, the expected churned ARR, and its bootstrap interval, against
hand-computed values and the binomial distribution the bootstrap draws from."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from health_pipeline.assets.morning_report import forecast as forecast_module
from health_pipeline.assets.morning_report.forecast import MIN_OUTCOMES, forecast, nearest_lead


def renewal(account_id: str, days: int | None, band: str | None, arr: float | None) -> dict:
    return {"account_id": account_id, "days_to_renewal": days, "health_band": band, "arr": arr}


def band(lead: int, name: str, outcomes: int, churned: int) -> dict:
    return {"lead_days": lead, "health_band": name, "outcomes": outcomes, "churned": churned}


@pytest.mark.parametrize("days, lead", [(0, 30), (44, 30), (45, 30), (46, 60), (75, 60), (76, 90), (400, 90)])
def test_a_renewal_reads_the_backtest_at_the_nearest_lead_the_shorter_on_a_tie(days, lead):
    assert nearest_lead(days, [30, 60, 90]) == lead


def test_the_expected_churned_arr_is_each_renewals_arr_times_its_bands_churn_rate():
    accounts = [renewal("A", 10, "healthy", 1000.0), renewal("B", 20, "at_risk", 500.0),
                renewal("C", 80, "neutral", 2000.0), renewal("D", 91, "at_risk", 9000.0),
                renewal("E", -3, "at_risk", 9000.0), renewal("F", None, "at_risk", 9000.0),
                renewal("G", 0, "healthy", None)]
    bands = [band(30, "healthy", 20, 2), band(30, "at_risk", 10, 6), band(90, "neutral", MIN_OUTCOMES - 5, 1)]
    result = forecast(accounts, bands)
    # Within 90 days, soonest first: G renews today; D (91 days), E (passed) and F (no date) do not count.
    assert [a["account_id"] for a in result.renewals] == ["G", "A", "B", "C"]
    assert [(a["lead_days"], a["churn_rate"]) for a in result.renewals] == [(30, 0.1), (30, 0.1), (30, 0.6),
                                                                            (90, None)]
    assert (result.arr, result.arr_at_risk) == (3500.0, 500.0)
    # A: 1,000 x 10 %; B: 500 x 60 %; C's band has 5 outcomes at 90 days: not forecast.
    assert result.expected == pytest.approx(400.0) and result.forecast_arr == 1500.0
    assert result.outcomes == 30
    assert [(g.lead_days, g.band, g.renewals, g.arr, g.calibrated) for g in result.groups] == [
        (30, "at_risk", 1, 500.0, True), (30, "healthy", 2, 1000.0, True), (90, "neutral", 1, 2000.0, False)]
    assert result.low <= result.expected <= result.high


def test_the_interval_is_the_binomials_for_one_band():
    """One band of 40 outcomes, 10 churned: a resample's churn rate is Binomial(40, 1/4) / 40, so
    the 95 % percentile interval of 1,000 x that rate sits at the binomial's 2.5 % and 97.5 %
    quantiles, within one step of 1,000 / 40."""
    result = forecast([renewal("A", 5, "at_risk", 1000.0)], [band(30, "at_risk", 40, 10)])
    assert result.expected == 250.0
    low, high = (1000 * stats.binom.ppf(q, 40, 0.25) / 40 for q in (0.025, 0.975))
    assert abs(result.low - low) <= 25 and abs(result.high - high) <= 25
    assert (low, high) == (125.0, 400.0)  # the quantiles: 5 and 16 churns of 40


@pytest.mark.parametrize("churned, expected", [(0, 0.0), (12, 700.0)])
def test_a_band_whose_outcomes_all_went_one_way_has_no_spread(churned, expected):
    result = forecast([renewal("A", 5, "healthy", 700.0)], [band(60, "healthy", 12, churned)])
    assert (result.expected, result.low, result.high) == (expected, expected, expected)


def test_without_enough_outcomes_there_is_no_number():
    none_at_all = forecast([renewal("A", 5, "healthy", 700.0)], [])
    assert none_at_all.expected is None and none_at_all.groups == [] and none_at_all.renewals[0]["lead_days"] is None
    too_few = forecast([renewal("A", 5, "healthy", 700.0)], [band(30, "healthy", MIN_OUTCOMES - 1, 3)])
    assert too_few.expected is None and (too_few.low, too_few.high) == (None, None)
    assert [g.calibrated for g in too_few.groups] == [False]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 90), st.sampled_from(["healthy", "neutral", "at_risk"]),
                          st.floats(0, 1e6)), min_size=1, max_size=8),
       st.lists(st.tuples(st.integers(MIN_OUTCOMES, 60), st.floats(0, 1)), min_size=3, max_size=3))
def test_the_forecast_lies_between_nothing_and_all_of_the_forecast_arr(renewals, outcomes):
    accounts = [renewal(f"A{i}", days, name, arr) for i, (days, name, arr) in enumerate(renewals)]
    bands = [band(30, name, n, round(n * share))
             for name, (n, share) in zip(["healthy", "neutral", "at_risk"], outcomes)]
    result = forecast(accounts, bands)
    assert 0 <= result.low <= result.high <= result.forecast_arr * (1 + 1e-9) + 1e-6
    assert 0 <= result.expected <= result.forecast_arr * (1 + 1e-9) + 1e-6


def test_a_band_of_one_outcome_adds_its_share_without_spread(monkeypatch):
    """Where the minimum allows a single outcome, it cannot be resampled: its share is fixed and
    the interval is the other bands' spread moved by it."""
    monkeypatch.setattr(forecast_module, "MIN_OUTCOMES", 1)
    alone = forecast([renewal("A", 5, "neutral", 300.0)], [band(30, "neutral", 1, 1)])
    assert (alone.expected, alone.low, alone.high) == (300.0, 300.0, 300.0)
    both = forecast([renewal("A", 5, "neutral", 300.0), renewal("B", 5, "at_risk", 1000.0)],
                    [band(30, "neutral", 1, 1), band(30, "at_risk", 40, 10)])
    assert both.expected == 550.0 and (both.low, both.high) == (300.0 + 125.0, 300.0 + 400.0)
