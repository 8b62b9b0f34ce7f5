"""The backtest: how well the health score at a lead time L before an outcome foresaw churn.

`pairs` has one row per (outcome, lead time L) for which the account was scored on the day
outcome_date − L. `backtest_tables` turns it into four tables (a summary per scorecard version
and lead, churn per band, the predictive power of every metric and component, and the churned
accounts the score called healthy); `churn_rate_chart` and `save_png` draw churn per band.
The definitions of every figure are in docs/metrics.md, section "Backtest".
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import vl_convert as vlc
from scipy import stats
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from health_pipeline.scorecard.model import BAND_COLOURS, BANDS

RETAINED = ("renewed", "expanded")
CHURNED = "churned"
DOWNGRADED = "downgraded"
OUTCOMES = (CHURNED, *RETAINED, DOWNGRADED)
# The band row of outcomes whose account had no band at L (it could not be scored), so no row goes missing.
UNSCORED = "unscored"
# A bootstrap interval needs at least this many outcomes of each class.
MIN_PER_CLASS = 2
# Raw AUCs this close to 0.5 rank no better than chance either way (float noise, not signal).
NO_SIGNAL_TOLERANCE = 1e-12
KEYS = ["scorecard_version", "lead_days"]

SUMMARY_COLUMNS = {
    "scorecard_version": "str", "lead_days": "int64", "n_outcomes": "int64", "n_churned": "int64",
    "n_retained": "int64", "base_churn_rate": "float64", "auc": "float64", "auc_ci_low": "float64",
    "auc_ci_high": "float64", "at_risk_precision": "float64", "at_risk_recall": "float64",
    "arr_churned": "float64", "arr_churned_flagged_at_risk": "float64", "n_downgraded": "int64",
    "downgraded_auc": "float64",
}
BAND_COLUMNS = {
    "scorecard_version": "str", "lead_days": "int64", "health_band": "str", "outcomes": "int64",
    "churned": "int64", "retained": "int64", "downgraded": "int64", "churn_rate": "float64", "lift": "float64",
    "downgrade_rate": "float64",
}
POWER_COLUMNS = {
    "scorecard_version": "str", "lead_days": "int64", "measure": "str", "kind": "str", "n": "int64",
    "auc": "float64", "auc_ci_low": "float64", "auc_ci_high": "float64", "direction": "str",
    "auc_lower_values_churn": "float64",
}
# The columns `pairs` must have besides its metric and `<component>_points` columns, with their dtypes.
PAIR_COLUMNS = {
    "scorecard_version": "str", "lead_days": "int64", "account_id": "str", "account_name": "str", "owner": "str",
    "outcome_date": "object", "outcome": "str", "scored_on": "object", "health_score": "float64",
    "health_band": "str", "top_drag": "str", "score_reason": "str", "arr": "float64",
}
MISS_COLUMNS = [
    "account_id", "account_name", "owner", "outcome_date", "lead_days", "scored_on", "health_score", "top_drag",
    "score_reason", "arr",
]
BAND_AND_UNSCORED_COLOURS = {**BAND_COLOURS, UNSCORED: "#9e9e9e"}


@dataclass(frozen=True)
class BacktestTables:
    """The backtest's tables; see docs/metrics.md, section "Backtest", for every column."""

    summary: pd.DataFrame  # a row per (scorecard_version, lead_days): how well health_score ranked churn
    bands: pd.DataFrame  # a row per (scorecard_version, lead_days, health_band): churn among that band's outcomes
    metric_power: pd.DataFrame  # a row per (scorecard_version, lead_days, measure): how well it alone ranks churn
    misses: pd.DataFrame  # a row per churned outcome whose band at the lead was healthy


def _known(is_churned, values) -> tuple[np.ndarray, np.ndarray]:
    """Labels and values of the rows whose value is not NaN."""
    labels = np.asarray(is_churned, dtype=bool)
    values = np.asarray(values, dtype="float64")
    known = ~np.isnan(values)
    return labels[known], values[known]


def auc(is_churned, values) -> float:
    """P(a churned outcome's value < a retained one's), ties half; NaN values left out; NaN if a class is empty."""
    labels, values = _known(is_churned, values)
    if labels.all() or not labels.any():
        return math.nan
    return float(roc_auc_score(labels, -values))


def _resampled_auc(churned: np.ndarray, retained: np.ndarray, axis: int = -1) -> np.ndarray:
    """`auc` of many resamples at once: Mann-Whitney U / (n churned × n retained) is the same figure, ties half."""
    # Vectorised because roc_auc_score in a loop takes seconds per interval.
    u = stats.mannwhitneyu(retained, churned, axis=axis, method="asymptotic").statistic
    return u / (churned.shape[axis] * retained.shape[axis])


def auc_interval(is_churned, values, *, samples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """The 95 % percentile bootstrap interval of `auc`; (NaN, NaN) with fewer than 2 outcomes of a class.

    Churned and retained outcomes are resampled separately (stratified), each class keeping its size,
    so no resample lacks a class and none is skipped.
    """
    labels, values = _known(is_churned, values)
    churned, retained = values[labels], values[~labels]
    if min(len(churned), len(retained)) < MIN_PER_CLASS or samples < 1:
        return math.nan, math.nan
    interval = stats.bootstrap(
        (churned, retained), _resampled_auc, n_resamples=samples, vectorized=True, paired=False,
        method="percentile", confidence_level=0.95, random_state=np.random.default_rng(seed),
        # bounds the (resamples × outcomes) arrays a batch allocates
        batch=max(1, 2_000_000 // len(values)),
    ).confidence_interval
    return float(interval.low), float(interval.high)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator and not math.isnan(denominator) else math.nan


def _orient(raw: float, low: float, high: float) -> tuple[str | None, float, float, float]:
    """(direction, auc, ci low, ci high) turned towards the direction in which the measure predicts churn."""
    if math.isnan(raw):
        return None, math.nan, math.nan, math.nan
    if abs(raw - 0.5) <= NO_SIGNAL_TOLERANCE:
        return "no_signal", raw, low, high
    if raw > 0.5:
        return "lower_values_churn", raw, low, high
    return "higher_values_churn", 1 - raw, 1 - high, 1 - low


def _typed(rows: list[dict], schema: dict[str, str]) -> pd.DataFrame:
    """A frame of exactly the schema's columns and dtypes; text columns keep None/NaN missing."""
    frame = pd.DataFrame(rows, columns=list(schema))
    for column, dtype in schema.items():
        if dtype == "str":
            frame[column] = frame[column].astype("str").where(frame[column].notna())
        elif dtype != "object":
            frame[column] = frame[column].astype(dtype)
    return frame


def _checked(pairs: pd.DataFrame, metrics: Sequence[str], components: Sequence[str]) -> pd.DataFrame:
    """A copy of pairs with numeric columns as float64; raises rather than drop rows it cannot place."""
    measures = [*metrics, *(f"{c}_points" for c in components)]
    missing = [c for c in [*PAIR_COLUMNS, *measures] if c not in pairs.columns]
    if missing and not pairs.empty:
        raise ValueError(f"pairs lacks columns {missing}")
    if missing:
        pairs = _typed([], PAIR_COLUMNS | dict.fromkeys(measures, "float64"))
    pairs = pairs.copy()
    outcomes = set(pairs["outcome"].dropna()) - set(OUTCOMES)
    if outcomes or pairs["outcome"].isna().any():
        raise ValueError(f"pairs has outcomes other than {OUTCOMES}: {sorted(outcomes) or ['null']}")
    bands = set(pairs["health_band"].dropna()) - set(BANDS)
    if bands:
        raise ValueError(f"pairs has health bands other than {BANDS}: {sorted(bands)}")
    pairs["lead_days"] = pairs["lead_days"].astype("int64")
    for column in ["health_score", "arr", *measures]:
        pairs[column] = pd.to_numeric(pairs[column]).to_numpy(dtype="float64", na_value=np.nan)
    return pairs


def _summary_row(group: pd.DataFrame, samples: int, seed: int) -> dict:
    outcomes = group[group["outcome"].isin((CHURNED, *RETAINED))]
    churned = (outcomes["outcome"] == CHURNED).to_numpy()
    flagged = (outcomes["health_band"] == "at_risk").to_numpy()
    arr = outcomes["arr"].fillna(0).to_numpy()
    score = outcomes["health_score"].to_numpy()
    low, high = auc_interval(churned, score, samples=samples, seed=seed)
    vs_downgrades = group[group["outcome"].isin((DOWNGRADED, *RETAINED))]
    n_churned = int(churned.sum())
    # at_risk is the prediction "churns": precision = share churned of at_risk, recall = share at_risk of churned
    precision = recall = math.nan
    if len(outcomes):  # sklearn refuses empty input; NaN, as 0 / 0 gives below
        precision = float(precision_score(churned, flagged, zero_division=np.nan))
        recall = float(recall_score(churned, flagged, zero_division=np.nan))
    return {
        "n_outcomes": len(outcomes), "n_churned": n_churned, "n_retained": len(outcomes) - n_churned,
        "base_churn_rate": _ratio(n_churned, len(outcomes)), "auc": auc(churned, score),
        "auc_ci_low": low, "auc_ci_high": high, "at_risk_precision": precision, "at_risk_recall": recall,
        "arr_churned": float(arr[churned].sum()), "arr_churned_flagged_at_risk": float(arr[churned & flagged].sum()),
        "n_downgraded": int((group["outcome"] == DOWNGRADED).sum()),
        "downgraded_auc": auc(vs_downgrades["outcome"] == DOWNGRADED, vs_downgrades["health_score"]),
    }


def _band_rows(group: pd.DataFrame, base_churn_rate: float) -> list[dict]:
    rows = []
    labels = group["health_band"].fillna(UNSCORED)
    for band in (*BANDS, UNSCORED):
        outcome = group.loc[labels == band, "outcome"]
        if outcome.empty:
            continue
        churned, downgraded = int((outcome == CHURNED).sum()), int((outcome == DOWNGRADED).sum())
        retained = int(outcome.isin(RETAINED).sum())
        churn_rate = _ratio(churned, churned + retained)
        rows.append({
            "health_band": band, "outcomes": churned + retained, "churned": churned, "retained": retained,
            "downgraded": downgraded, "churn_rate": churn_rate, "lift": _ratio(churn_rate, base_churn_rate),
            "downgrade_rate": _ratio(downgraded, downgraded + retained),
        })
    return rows


def _power_rows(group: pd.DataFrame, measures: list[tuple[str, str, str]], samples: int, seed: int) -> list[dict]:
    outcomes = group[group["outcome"].isin((CHURNED, *RETAINED))]
    churned = (outcomes["outcome"] == CHURNED).to_numpy()
    rows = []
    for kind, measure, column in measures:
        values = outcomes[column].to_numpy()
        raw = auc(churned, values)
        direction, oriented, low, high = _orient(raw, *auc_interval(churned, values, samples=samples, seed=seed))
        rows.append({
            "measure": measure, "kind": kind, "n": int((~np.isnan(values)).sum()), "auc": oriented,
            "auc_ci_low": low, "auc_ci_high": high, "direction": direction, "auc_lower_values_churn": raw,
        })
    return rows


def backtest_tables(
    pairs: pd.DataFrame, metrics: Sequence[str], components: Sequence[str], *,
    bootstrap_samples: int = 1000, seed: int = 0,
) -> BacktestTables:
    """The backtest's four tables from the (outcome, lead time) pairs; see BacktestTables."""
    pairs = _checked(pairs, metrics, components)
    measures = [("metric", m, m) for m in metrics] + [("component", c, f"{c}_points") for c in components]
    summary, bands, power = [], [], []
    for (version, lead), group in pairs.groupby(KEYS, dropna=False, sort=True):
        key = {"scorecard_version": version, "lead_days": lead}
        row = key | _summary_row(group, bootstrap_samples, seed)
        summary.append(row)
        bands += [key | band for band in _band_rows(group, row["base_churn_rate"])]
        power += [key | measure for measure in _power_rows(group, measures, bootstrap_samples, seed)]
    metric_power = _typed(power, POWER_COLUMNS).sort_values(
        ["scorecard_version", "lead_days", "auc", "kind", "measure"], ascending=[True, True, False, True, True],
        na_position="last", kind="stable",
    )
    points = [f"{c}_points" for c in components]
    misses = pairs.loc[(pairs["outcome"] == CHURNED) & (pairs["health_band"] == "healthy"), MISS_COLUMNS + points]
    return BacktestTables(
        summary=_typed(summary, SUMMARY_COLUMNS),
        bands=_typed(bands, BAND_COLUMNS),
        metric_power=metric_power.reset_index(drop=True),
        misses=misses.sort_values(["lead_days", "outcome_date", "account_id"], kind="stable").reset_index(drop=True),
    )


def churn_rate_chart(bands: pd.DataFrame) -> alt.FacetChart:
    """Bars of churn rate per band, a panel per lead (and a row per scorecard version), the base rate dashed."""
    totals = bands.groupby(KEYS, dropna=False)[["churned", "outcomes"]].transform("sum")
    data = bands.assign(
        base_churn_rate=totals["churned"] / totals["outcomes"], lead=bands["lead_days"].map("{} days before".format),
    )
    order = [*BANDS, UNSCORED]
    band = alt.X("health_band:N", sort=order, title=None, axis=alt.Axis(labelAngle=0))
    bars = alt.Chart().mark_bar().encode(
        x=band,
        y=alt.Y("churn_rate:Q", title="churn rate", axis=alt.Axis(format="%")),
        color=alt.Color(
            "health_band:N", sort=order, legend=None,
            scale=alt.Scale(domain=order, range=[BAND_AND_UNSCORED_COLOURS[b] for b in order]),
        ),
        tooltip=[
            "health_band:N", alt.Tooltip("churn_rate:Q", format=".1%"), "churned:Q", "outcomes:Q",
            alt.Tooltip("lift:Q", format=".2f"),
        ],
    )
    labels = alt.Chart().mark_text(dy=-6).encode(x=band, y="churn_rate:Q", text=alt.Text("outcomes:Q", format="d"))
    base = alt.Chart().mark_rule(strokeDash=[6, 4], color="black").encode(y="max(base_churn_rate):Q")
    facets = {"column": alt.Column(
        "lead:N", title=None, sort=alt.EncodingSortField("lead_days"), header=alt.Header(labelFontSize=13),
    )}
    if bands["scorecard_version"].nunique(dropna=False) > 1:
        facets["row"] = alt.Row("scorecard_version:N", title="scorecard version")
    layers = alt.layer(bars, labels, base, data=data).properties(width=alt.Step(60), height=220)
    return layers.facet(**facets).properties(
        title=alt.TitleParams(
            "Churn rate of outcomes by the health band the account had N days before",
            subtitle=[
                "Bar: churned / (churned + renewed + expanded) among the band's outcomes; number: those outcomes.",
                "Dashed line: the base churn rate at that lead. Downgrades are left out.",
            ],
        ),
    )


def save_png(chart: alt.TopLevelMixin, path: Path) -> None:
    """Render a chart to a PNG file with vl-convert: no browser, and no network (every URL is refused)."""
    vl_version = "_".join(alt.SCHEMA_VERSION.split(".")[:2])
    png = vlc.vegalite_to_png(chart.to_json(), vl_version=vl_version, scale=2, allowed_base_urls=[])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # readers see the old plot or the new one
    partial.write_bytes(png)
    os.replace(partial, path)
