"""The scorecard fit on planted synthetic outcomes: what it chooses, its time split, and its held-out evidence."""

from __future__ import annotations

import datetime as dt
import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from health_pipeline.backtest import CHURNED, RETAINED, auc
from health_pipeline.contract import account_metric_domains
from health_pipeline.scorecard.fit import (
    EVIDENCE_COLUMNS,
    bins_spec,
    choose_split_date,
    component_spec,
    config_text,
    fitted_scores,
    load_text,
    split_by_time,
    suggest_scorecard,
    two_significant,
)
from health_pipeline.scorecard.parser import load_config
from health_pipeline.settings import DEFAULT_CONFIG_PATH

PRODUCTION_FILE = DEFAULT_CONFIG_PATH
PRODUCTION = load_config(PRODUCTION_FILE)
PRODUCTION_YAML = yaml.safe_load(PRODUCTION_FILE.read_text())
DOMAINS = account_metric_domains(PRODUCTION.tracked_events)
PLANTED = {"usage_change_pct": True, "breadth_28d": True}  # metric -> higher_is_better
NO_SIGNAL = "contacts_total"
FIRST_OUTCOME = dt.date(2025, 1, 1)
LEADS = (30, 90)


def _metric_values(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Noise for every metric, within its domain; the planted metrics are drawn here too."""
    values = {}
    for metric, (low, high) in DOMAINS.items():
        if metric == "is_inactive_90d":
            values[metric] = (rng.random(n) < 0.1).astype(float)
        elif high == 1:
            values[metric] = rng.beta(2, 3, n)
        elif low == -1:
            values[metric] = np.clip(rng.normal(0, 0.4, n), -1, None)
        elif np.isfinite(high):  # a bounded score: the pulse (0..2), NPS (-100..100)
            values[metric] = rng.integers(low, high + 1, n).astype(float)
        else:
            values[metric] = rng.poisson(rng.choice([3, 20, 200]), n).astype(float)
    return values


def planted_pairs(seed: int = 0, n: int = 400) -> pd.DataFrame:
    """`n` outcomes over a year; churn driven by low usage_change_pct and low breadth_28d, two leads each."""
    rng = np.random.default_rng(seed)
    dates = [FIRST_OUTCOME + dt.timedelta(days=int(d)) for d in rng.integers(0, 365, n)]
    base = _metric_values(rng, n)
    logit = -1.5 - 3.0 * base["usage_change_pct"] - 5.0 * (base["breadth_28d"] - 0.4)
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    other = rng.choice(["renewed", "renewed", "expanded", "downgraded"], n)
    outcome = np.where(churned, CHURNED, other)
    frames = []
    for lead in LEADS:
        # Further ahead the metrics drift, so the signal weakens with the lead.
        metrics = {m: v.copy() for m, v in base.items()}
        drift = rng.normal(0, 0.05 * lead / 30, n)
        metrics["usage_change_pct"] = np.clip(metrics["usage_change_pct"] + drift, -1, None)
        metrics["breadth_28d"] = np.clip(metrics["breadth_28d"] + drift / 2, 0, 1)
        frame = pd.DataFrame({
            "scorecard_version": "v1", "lead_days": lead, "account_id": [f"A{i:04d}" for i in range(n)],
            "account_name": [f"Account {i}" for i in range(n)], "owner": "ana", "outcome_date": dates,
            "outcome": outcome, "scored_on": [d - dt.timedelta(days=lead) for d in dates],
            "top_drag": "usage_trend", "score_reason": "", "arr": 1000.0, **metrics,
        })
        frame["health_score"] = fitted_scores(PRODUCTION, frame)
        frame["health_band"] = frame["health_score"].map(PRODUCTION.scorecard.band)
        for component in PRODUCTION.components:
            frame[f"{component}_points"] = math.nan
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    return planted_pairs()


@pytest.fixture(scope="module")
def fitted(pairs):
    return suggest_scorecard(pairs, PRODUCTION, PRODUCTION_YAML)


def _card(text: str) -> dict:
    return yaml.safe_load(text)["scorecard"]


def _held_out(pairs: pd.DataFrame, split_date: dt.date, lead: int) -> pd.DataFrame:
    rows = pairs[(pairs["lead_days"] == lead) & pairs["outcome"].isin((CHURNED, *RETAINED))]
    return split_by_time(rows, split_date)[1]


def _random_scorecard(seed: int, train: pd.DataFrame) -> str:
    """A valid scorecard of random metrics, directions, bins and monotone points, built as the fit builds its own."""
    rng = np.random.default_rng(seed)
    metrics = rng.choice(sorted(DOMAINS), size=3, replace=False)
    components = {}
    for metric in metrics:
        higher = bool(rng.integers(2))
        values = train[metric].dropna().to_numpy()
        low, high = DOMAINS[metric]
        edges = sorted({e for e in map(two_significant, rng.choice(values, 4)) if low < e <= high})
        points = np.sort(rng.integers(0, 5, len(edges) + 1))
        points[-1] = max(points[-1], 1)  # the parser wants a bin that awards points
        components[str(metric)] = component_spec(metric, higher, bins_spec(edges, list(points[:: 1 if higher else -1]),
                                                                          DOMAINS[metric]))
    card = {"groups": {"fitted": 100}, "components": components, "bands": {"healthy": 70, "neutral": 40}}
    return config_text(PRODUCTION_YAML, card)


def test_the_fit_chooses_the_planted_metrics_in_their_direction(fitted):
    components = _card(fitted.yaml_text)["components"]
    chosen = {c["metric"]: c["higher_is_better"] for c in components.values()}
    assert {m: chosen.get(m) for m in PLANTED} == PLANTED
    assert NO_SIGNAL not in chosen
    assert len(chosen) <= 5


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_choice_does_not_hang_on_one_lucky_sample(seed):
    components = _card(suggest_scorecard(planted_pairs(seed), PRODUCTION, PRODUCTION_YAML).yaml_text)["components"]
    assert {c["metric"]: c["higher_is_better"] for c in components.values()} == PLANTED


def test_the_file_loads_and_its_points_rise_as_the_metric_improves(fitted):
    config = load_text(fitted.yaml_text)
    assert [s.name for s in config.segments] == ["default"]
    for component in config.scorecard.components:
        points = [b.points for b in component.bins]
        assert points == sorted(points, reverse=not component.higher_is_better), component.name
        assert min(points) == 0 and max(points) == 4
        assert all(p == int(p) for p in points)
    assert 0 <= config.scorecard.neutral_from <= config.scorecard.healthy_from <= 100
    # The production file's measuring blocks are kept unchanged, so the file drops into place.
    document = yaml.safe_load(fitted.yaml_text)
    for block in ("events", "exclude_identities", "power_roles", "onboarding"):
        assert document[block] == PRODUCTION_YAML[block]
    assert config.metrics_version == PRODUCTION.metrics_version
    assert "segments" not in document


def test_the_header_states_its_evidence(fitted):
    header = [line for line in fitted.yaml_text.splitlines() if line.startswith("#")]
    text = "\n".join(header)
    assert fitted.yaml_text.startswith("# ")
    assert ("Review before use: this file never replaces the production scorecard by itself; try it with "
            "`health-pipeline backtest --config <file>`.") in text
    assert f"Split by time at {fitted.split_date}" in text
    for metric in PLANTED:
        assert re.search(rf"{metric}: AUC 0\.\d+, higher is better", text)
    for row in fitted.evidence.itertuples():
        assert f"lead {row.lead_days} days: n_train {row.n_train}, n_test {row.n_test}" in text


def test_the_fitted_scorecard_beats_chance_and_random_scorecards_on_held_out_outcomes(pairs, fitted):
    evidence = fitted.evidence
    assert list(evidence.columns) == EVIDENCE_COLUMNS
    assert evidence["lead_days"].tolist() == list(LEADS)
    config = load_text(fitted.yaml_text)
    train, _ = split_by_time(pairs[pairs["lead_days"] == LEADS[0]], fitted.split_date)
    for lead in LEADS:
        test = _held_out(pairs, fitted.split_date, lead)
        churned = test["outcome"] == CHURNED
        fitted_auc = auc(churned, fitted_scores(config, test))
        assert evidence.set_index("lead_days").loc[lead, "auc_fitted_test"] == pytest.approx(fitted_auc)
        assert fitted_auc > 0.65
        random_aucs = [auc(churned, fitted_scores(load_text(_random_scorecard(s, train)), test)) for s in range(5)]
        assert fitted_auc > max(random_aucs), random_aucs


def test_the_split_is_by_time(pairs, fitted):
    outcomes = pairs[pairs["outcome"].isin((CHURNED, *RETAINED))]
    train, test = split_by_time(outcomes, fitted.split_date)
    assert train["outcome_date"].max() < fitted.split_date <= test["outcome_date"].min()
    # About test_share of the outcomes are held out.
    assert test["account_id"].nunique() / outcomes["account_id"].nunique() == pytest.approx(0.3, abs=0.02)
    counts = outcomes.assign(held=outcomes["outcome_date"] >= fitted.split_date).groupby(["lead_days", "held"]).size()
    for row in fitted.evidence.itertuples():
        assert (row.n_train, row.n_test) == (counts[(row.lead_days, False)], counts[(row.lead_days, True)])


def test_held_out_rows_choose_nothing(pairs, fitted):
    """Held-out outcomes rewritten at will leave the metrics, bins, points and bands as they were."""
    changed = pairs.copy()
    held = (changed["outcome_date"] >= fitted.split_date) & changed["outcome"].isin((CHURNED, *RETAINED))
    rng = np.random.default_rng(1)
    # Flip every held-out churn to renewal and back, and give the rows wild metric values.
    changed.loc[held, "outcome"] = np.where(changed.loc[held, "outcome"] == CHURNED, "renewed", CHURNED)
    for metric, (low, high) in DOMAINS.items():
        wild = rng.uniform(low, 10 if high == math.inf else high, held.sum())
        changed.loc[held, metric] = wild
    changed.loc[held, "health_score"] = rng.uniform(0, 100, held.sum())
    refit = suggest_scorecard(changed, PRODUCTION, PRODUCTION_YAML)
    assert refit.split_date == fitted.split_date
    assert _card(refit.yaml_text) == _card(fitted.yaml_text)
    # Only the held-out evidence moved.
    assert not refit.evidence["auc_fitted_test"].equals(fitted.evidence["auc_fitted_test"])


def test_thin_history_raises_with_its_counts(pairs):
    # Three weeks of outcomes: about 25 train, fewer than 10 of them churned.
    early = pairs[pairs["outcome_date"] < FIRST_OUTCOME + dt.timedelta(days=21)]
    outcomes = early[early["outcome"].isin((CHURNED, *RETAINED))]
    train, _ = split_by_time(outcomes[outcomes["lead_days"] == LEADS[0]], choose_split_date(outcomes, 0.3))
    n_churned = int((train["outcome"] == CHURNED).sum())
    n_retained = len(train) - n_churned
    assert n_churned < 10 <= n_retained
    with pytest.raises(ValueError, match=rf"are {n_churned} churned and {n_retained} retained; at least 10 of each"):
        suggest_scorecard(early, PRODUCTION, PRODUCTION_YAML)


def test_no_qualifying_metric_raises(pairs):
    flat = pairs.copy()
    for metric in DOMAINS:
        flat[metric] = 1.0
    with pytest.raises(ValueError, match="no metric qualifies"):
        suggest_scorecard(flat, PRODUCTION, PRODUCTION_YAML)


def test_the_same_input_gives_the_same_file(pairs, fitted):
    assert suggest_scorecard(pairs, PRODUCTION, PRODUCTION_YAML).yaml_text == fitted.yaml_text
    shuffled = pairs.sample(frac=1, random_state=3).reset_index(drop=True)
    assert suggest_scorecard(shuffled, PRODUCTION, PRODUCTION_YAML).yaml_text == fitted.yaml_text


def test_a_chosen_lead_fits_on_that_lead(pairs):
    fit = suggest_scorecard(pairs, PRODUCTION, PRODUCTION_YAML, lead_days=90)
    assert "Fitted at lead 90 days" in fit.yaml_text
    with pytest.raises(ValueError, match="no rows at lead 7 days"):
        suggest_scorecard(pairs, PRODUCTION, PRODUCTION_YAML, lead_days=7)


def test_fitted_scores_follow_the_reference_scorer():
    rows = pd.DataFrame({"usage_28d": [700.0, math.nan, math.nan], "breadth_28d": [0.7, 0.05, math.nan]})
    config = load_text(config_text(PRODUCTION_YAML, {
        "groups": {"fitted": 100}, "bands": {"healthy": 70, "neutral": 40},
        "components": {m: component_spec(m, True, bins_spec([0.1], [0, 4], DOMAINS[m])) for m in ("usage_28d",
                                                                                                    "breadth_28d")},
    }))
    # Both top bins; a null scores neutral (2 of 4) beside a bottom bin; nothing measured, nothing scored.
    assert fitted_scores(config, rows).tolist() == pytest.approx([100.0, 25.0, math.nan], nan_ok=True)


def test_bins_cover_the_domain_in_interval_notation():
    assert bins_spec([0.1, 0.25], [0, 2, 4], (0, 1)) == [
        {"range": "[0, 0.1)", "points": 0}, {"range": "[0.1, 0.25)", "points": 2}, {"range": "[0.25, 1]", "points": 4},
    ]
    # Neighbours scoring alike merge; an open-ended metric ends at inf.
    assert bins_spec([1, 50, 200], [0, 2, 2, 4], (0, math.inf)) == [
        {"range": "[0, 1)", "points": 0}, {"range": "[1, 200)", "points": 2}, {"range": "[200, inf)", "points": 4},
    ]
    assert [two_significant(v) for v in (0.1234, 1234.5, -0.004567, 0.0)] == [0.12, 1200.0, -0.0046, 0.0]
