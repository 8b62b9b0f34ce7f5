"""The backtest's statistics against figures worked out by hand, and the AUC's properties."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score

from health_pipeline.backtest import (
    BAND_COLUMNS,
    MISS_COLUMNS,
    POWER_COLUMNS,
    SUMMARY_COLUMNS,
    auc,
    auc_interval,
    backtest_tables,
    churn_rate_chart,
    save_png,
)

METRICS = ["seats", "constant"]
COMPONENTS = ["breadth"]
OUTCOME_DATE = dt.date(2026, 9, 30)
NAN = math.nan


def pair(account, outcome, score, band, arr, seats, breadth, *, lead=30, version="v1") -> dict:
    """One (outcome, lead) row as the backtest SQL returns it."""
    return {
        "scorecard_version": version, "lead_days": lead, "account_id": account, "account_name": f"{account} Inc",
        "owner": "ana", "outcome_date": OUTCOME_DATE, "outcome": outcome,
        "scored_on": OUTCOME_DATE - dt.timedelta(days=lead), "health_score": score, "health_band": band,
        "top_drag": "breadth", "score_reason": f"{band} {score}/100", "arr": arr,
        "seats": seats, "constant": 5.0, "breadth_points": breadth,
    }


# Lead 30: 4 churned, 5 retained (renewed or expanded), 2 downgraded. C4 could not be scored.
LEAD_30 = [
    pair("C1", "churned", 20, "at_risk", 1000, 50, 0),
    pair("C2", "churned", 55, "neutral", 2000, 60, 1),
    pair("C3", "churned", 75, "healthy", NAN, 70, 4),
    pair("C4", "churned", NAN, None, 300, 80, NAN),
    pair("R1", "renewed", 85, "healthy", 500, 10, 4),
    pair("R2", "expanded", 75, "healthy", 800, 20, 4),
    pair("R3", "renewed", 55, "neutral", 100, 30, 2),
    pair("R4", "renewed", 30, "at_risk", 100, 40, 1),
    pair("R5", "renewed", 60, "neutral", 100, 45, 3),
]
DOWNGRADES_30 = [
    pair("D1", "downgraded", 35, "at_risk", 100, 15, 2),
    pair("D2", "downgraded", 70, "healthy", 100, 25, 3),
]
# Lead 60: one churned, one retained.
LEAD_60 = [
    pair("C1", "churned", 72, "healthy", 1000, 50, 0, lead=60),
    pair("R1", "renewed", 50, "neutral", 500, 10, 4, lead=60),
]


def tables(rows=LEAD_30 + DOWNGRADES_30 + LEAD_60, **kwargs):
    return backtest_tables(pd.DataFrame(rows), METRICS, COMPONENTS, bootstrap_samples=200, **kwargs)


def row_of(frame: pd.DataFrame, **key) -> dict:
    selected = frame.loc[np.logical_and.reduce([frame[k] == v for k, v in key.items()])]
    assert len(selected) == 1, key
    return selected.iloc[0].to_dict()


def test_summary_of_the_crafted_outcomes():
    summary = tables().summary
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert summary["lead_days"].tolist() == [30, 60]
    # health_score AUC at 30: C4 (NaN score) left out, so 3 churned (20, 55, 75) × 5 retained (85, 75, 55, 30, 60)
    # = 15 pairs. churned lower wins: 20 beats all 5; 55 beats 85, 75, 60 and ties 55; 75 beats 85 and ties 75.
    # k = 5 + 3 + 1 = 9 wins, t = 2 ties → (9 + 2/2) / 15 = 2/3.
    # base rate: 4 churned / (4 + 5) outcomes; downgrades excluded.
    # at_risk outcomes: C1 (churned), R4 (retained) → precision 1/2 (D1 is a downgrade: not counted).
    # churned: C1..C4, of which C1 at_risk (C4 unscored counts as not flagged) → recall 1/4.
    # arr churned: 1000 + 2000 + 0 (C3's NaN) + 300 = 3300; flagged: C1's 1000.
    # downgraded_auc: 2 downgraded (35, 70) × 5 retained = 10 pairs; 35 beats 85, 75, 55, 60 (4); 70 beats 85, 75
    # (2); no ties → 6/10.
    lead_30 = row_of(summary, lead_days=30)
    assert lead_30 == pytest.approx({
        "scorecard_version": "v1", "lead_days": 30, "n_outcomes": 9, "n_churned": 4, "n_retained": 5,
        "base_churn_rate": 4 / 9, "auc": 2 / 3, "auc_ci_low": lead_30["auc_ci_low"],
        "auc_ci_high": lead_30["auc_ci_high"], "at_risk_precision": 1 / 2, "at_risk_recall": 1 / 4,
        "arr_churned": 3300.0, "arr_churned_flagged_at_risk": 1000.0, "n_downgraded": 2, "downgraded_auc": 0.6,
    })
    assert 0 <= lead_30["auc_ci_low"] <= 2 / 3 <= lead_30["auc_ci_high"] <= 1
    # Lead 60: 1 churned (72) × 1 retained (50) = 1 pair, 72 is not lower → 0/1. No at_risk outcome → precision
    # NaN (0/0); C1 was not at_risk → recall 0/1. One outcome per class is too few for an interval.
    assert row_of(summary, lead_days=60) == pytest.approx({
        "scorecard_version": "v1", "lead_days": 60, "n_outcomes": 2, "n_churned": 1, "n_retained": 1,
        "base_churn_rate": 0.5, "auc": 0.0, "auc_ci_low": NAN, "auc_ci_high": NAN, "at_risk_precision": NAN,
        "at_risk_recall": 0.0, "arr_churned": 1000.0, "arr_churned_flagged_at_risk": 0.0, "n_downgraded": 0,
        "downgraded_auc": NAN,
    }, nan_ok=True)


def test_churn_lift_and_downgrades_per_band():
    bands = tables().bands
    assert list(bands.columns) == list(BAND_COLUMNS)
    # Base rate at 30 is 4/9. Lift = churn_rate / (4/9); downgrade_rate = downgraded / (downgraded + retained).
    expected = [
        # healthy: C3 churned; R1, R2 retained; D2 downgraded → 1/3 churn, lift 3/4, downgrades 1/3
        (30, "healthy", 3, 1, 2, 1, 1 / 3, 0.75, 1 / 3),
        # neutral: C2; R3, R5 → 1/3, lift 3/4, downgrades 0/2
        (30, "neutral", 3, 1, 2, 0, 1 / 3, 0.75, 0.0),
        # at_risk: C1; R4; D1 → 1/2, lift 9/8, downgrades 1/2
        (30, "at_risk", 2, 1, 1, 1, 1 / 2, 1.125, 1 / 2),
        # unscored (no band): C4 → 1/1, lift 9/4, downgrades 0/0
        (30, "unscored", 1, 1, 0, 0, 1.0, 2.25, NAN),
        # Lead 60, base 1/2: healthy C1 → 1/1, lift 2; neutral R1 → 0/1, lift 0; no at_risk row.
        (60, "healthy", 1, 1, 0, 0, 1.0, 2.0, NAN),
        (60, "neutral", 1, 0, 1, 0, 0.0, 0.0, 0.0),
    ]
    columns = BAND_COLUMNS.keys() - {"scorecard_version"}
    got = [tuple(r) for r in bands[[c for c in BAND_COLUMNS if c in columns]].itertuples(index=False)]
    assert got == [pytest.approx(e, nan_ok=True) for e in expected]
    assert bands[["outcomes", "churned", "downgraded"]].dtypes.eq("int64").all()
    assert bands[["churn_rate", "lift", "downgrade_rate"]].dtypes.eq("float64").all()


def test_every_row_lands_in_exactly_one_band():
    rows = LEAD_30 + DOWNGRADES_30 + LEAD_60
    bands = tables(rows).bands
    counted = bands.groupby("lead_days")[["outcomes", "downgraded"]].sum().sum(axis=1)
    assert counted.to_dict() == pd.DataFrame(rows)["lead_days"].value_counts().to_dict()


def test_downgrades_do_not_change_the_churn_figures():
    churn_columns = [c for c in SUMMARY_COLUMNS if c not in ("n_downgraded", "downgraded_auc")]
    with_downgrades, without = tables().summary, tables(LEAD_30 + LEAD_60).summary
    pd.testing.assert_frame_equal(with_downgrades[churn_columns], without[churn_columns])
    assert without["n_downgraded"].tolist() == [0, 0]
    assert with_downgrades["n_downgraded"].tolist() == [2, 0]


def test_misses_are_the_churned_outcomes_called_healthy():
    misses = tables().misses
    assert list(misses.columns) == MISS_COLUMNS + ["breadth_points"]
    # C3 was healthy 30 days before churning (arr unknown), C1 healthy 60 days before.
    got = misses[["account_id", "lead_days", "scored_on", "health_score", "arr", "breadth_points"]].to_dict("records")
    assert got == [
        pytest.approx({"account_id": "C3", "lead_days": 30, "scored_on": dt.date(2026, 8, 31), "health_score": 75.0,
                       "arr": NAN, "breadth_points": 4.0}, nan_ok=True),
        pytest.approx({"account_id": "C1", "lead_days": 60, "scored_on": dt.date(2026, 8, 1), "health_score": 72.0,
                       "arr": 1000.0, "breadth_points": 0.0}),
    ]


def test_metric_power_is_oriented_towards_churn():
    power = tables().metric_power
    assert list(power.columns) == list(POWER_COLUMNS)
    lead_30 = power[power["lead_days"] == 30]
    # Sorted by auc, descending.
    assert lead_30["measure"].tolist() == ["seats", "breadth", "constant"]
    # seats: every churned value (50..80) is above every retained one (10..45), so the raw AUC (lower churns) is 0:
    # higher values churn, oriented auc 1; every resample also gives 0, so the interval is (1, 1).
    assert row_of(lead_30, measure="seats") == pytest.approx({
        "scorecard_version": "v1", "lead_days": 30, "measure": "seats", "kind": "metric", "n": 9, "auc": 1.0,
        "auc_ci_low": 1.0, "auc_ci_high": 1.0, "direction": "higher_values_churn", "auc_lower_values_churn": 0.0,
    })
    # breadth points: C4's NaN left out (n = 8), 3 churned (0, 1, 4) × 5 retained (4, 4, 2, 1, 3) = 15 pairs:
    # 0 beats all 5; 1 beats 4, 4, 2, 3 and ties 1; 4 ties 4, 4 → k = 9, t = 3 → (9 + 1.5) / 15 = 0.7.
    breadth = row_of(lead_30, measure="breadth")
    assert (breadth["kind"], breadth["n"], breadth["direction"]) == ("component", 8, "lower_values_churn")
    assert (breadth["auc"], breadth["auc_lower_values_churn"]) == pytest.approx((0.7, 0.7))
    assert breadth["auc_ci_low"] <= 0.7 <= breadth["auc_ci_high"]
    # One distinct value: every pair ties → 0.5, no signal either way.
    constant = row_of(lead_30, measure="constant")
    assert (constant["auc"], constant["direction"]) == (0.5, "no_signal")
    # Lead 60 (1 × 1): breadth 0 < 4 and seats 50 > 10 both separate; ties on auc go to components first.
    lead_60 = power[power["lead_days"] == 60]
    assert lead_60[["measure", "auc", "direction"]].values.tolist() == [
        ["breadth", 1.0, "lower_values_churn"], ["seats", 1.0, "higher_values_churn"], ["constant", 0.5, "no_signal"],
    ]
    assert lead_60[["auc_ci_low", "auc_ci_high"]].isna().all().all()


def test_intervals_are_seeded_and_need_two_outcomes_per_class():
    first, again, other = tables(seed=3), tables(seed=3), tables(seed=4)
    pd.testing.assert_frame_equal(first.summary, again.summary)
    pd.testing.assert_frame_equal(first.metric_power, again.metric_power)
    assert first.summary["auc_ci_low"].iloc[0] == again.summary["auc_ci_low"].iloc[0]
    assert not first.metric_power.equals(other.metric_power)
    assert auc_interval([True, False, False, False], [1.0, 2.0, 3.0, 4.0]) == pytest.approx((NAN, NAN), nan_ok=True)
    # A NaN value does not count towards the two: one scored churned outcome is too few.
    assert math.isnan(auc_interval([True, True, False, False], [1.0, NAN, 3.0, 4.0])[0])


def test_interval_contains_the_estimate_on_a_reasonable_set():
    rng = np.random.default_rng(11)
    labels = np.r_[np.ones(60, bool), np.zeros(140, bool)]
    values = np.r_[rng.normal(40, 15, 60), rng.normal(55, 15, 140)].round()
    low, high = auc_interval(labels, values)
    assert low < auc(labels, values) < high
    assert 0.05 < high - low < 0.3


def test_interval_resamples_each_class_and_scores_resamples_with_sklearn():
    rng = np.random.default_rng(5)
    labels = rng.random(40) < 0.3
    values = rng.integers(0, 10, 40).astype(float)

    def sklearn_auc(churned, retained):
        return roc_auc_score(np.r_[np.ones(len(churned)), np.zeros(len(retained))], -np.r_[churned, retained])

    reference = stats.bootstrap(
        (values[labels], values[~labels]), sklearn_auc, n_resamples=300, vectorized=False, paired=False,
        method="percentile", random_state=np.random.default_rng(9),
    ).confidence_interval
    assert auc_interval(labels, values, samples=300, seed=9) == pytest.approx((reference.low, reference.high))


VALUES = st.one_of(st.integers(-20, 20).map(float), st.floats(-1e6, 1e6))
LABELLED = st.lists(st.tuples(st.booleans(), VALUES), min_size=2, max_size=40)


def split(rows) -> tuple[np.ndarray, np.ndarray]:
    labels = np.array([r[0] for r in rows], dtype=bool)
    assume(labels.any() and not labels.all())
    return labels, np.array([r[1] for r in rows], dtype=float)


@settings(max_examples=200, deadline=None)
@given(rows=LABELLED)
def test_auc_is_sklearns_roc_auc_of_the_negated_values(rows):
    labels, values = split(rows)
    assert auc(labels, values) == pytest.approx(roc_auc_score(labels, -values))
    assert auc(labels, -values) == pytest.approx(1 - auc(labels, values))


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(st.booleans(), st.integers(-20, 20)), min_size=2, max_size=40))
def test_auc_is_invariant_under_strictly_increasing_transforms(rows):
    labels, values = split(rows)
    for transformed in (np.exp(values / 4) * 1000 - 7, values**3 + values, values + 0.5):
        assert auc(labels, transformed) == pytest.approx(auc(labels, values))


def test_auc_leaves_out_nan_values_and_is_nan_without_both_classes():
    assert auc([True, False, True, False], [1.0, 2.0, NAN, 0.5]) == auc([True, False, False], [1.0, 2.0, 0.5])
    assert math.isnan(auc([True, True], [1.0, 2.0]))
    assert math.isnan(auc([True, False], [1.0, NAN]))
    assert math.isnan(auc([], []))


@pytest.mark.parametrize("pairs", [pd.DataFrame(columns=list(pd.DataFrame(LEAD_30).columns)), pd.DataFrame()])
def test_empty_pairs_give_empty_tables_with_their_columns(pairs):
    result = backtest_tables(pairs, METRICS, COMPONENTS)
    for frame, schema in [
        (result.summary, SUMMARY_COLUMNS), (result.bands, BAND_COLUMNS), (result.metric_power, POWER_COLUMNS),
    ]:
        assert frame.empty
        assert list(frame.columns) == list(schema)
        assert {c: str(t) for c, t in frame.dtypes.items() if schema[c] != "str"} == {
            c: t for c, t in schema.items() if t != "str"
        }
    assert result.misses.empty
    assert list(result.misses.columns) == MISS_COLUMNS + ["breadth_points"]


def test_an_unknown_outcome_is_an_error_not_a_dropped_row():
    with pytest.raises(ValueError, match="cancelled"):
        tables(LEAD_30 + [pair("X1", "cancelled", 50, "neutral", 0, 0, 0)])


def test_the_churn_rate_chart_renders_to_png(tmp_path):
    bands = tables().bands
    chart = churn_rate_chart(bands)
    assert '"url"' not in chart.to_json()  # data inline: nothing to fetch
    path = tmp_path / "charts" / "churn_rate.png"
    save_png(chart, path)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert path.stat().st_size > 1000
    two_versions = pd.concat([bands, bands.assign(scorecard_version="v2")])
    assert "row" in churn_rate_chart(two_versions).to_dict()["facet"]
