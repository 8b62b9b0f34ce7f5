"""Suggest a scorecard from outcome history: metrics, bins and points fitted on a time split of `pairs`.

The suggestion is a complete configuration file in the scorecard's own bins-and-points form, so a
person can read, edit and backtest it; it never replaces the production file by itself. Outcomes
before a split date choose everything (metrics, bins, points, bands); the later ones are held out
and only measure it. `pairs` is the backtest's input: a row per (outcome, lead time).
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats
from sklearn.isotonic import IsotonicRegression

from health_pipeline.backtest import CHURNED, RETAINED, auc
from health_pipeline.contract import account_metric_domains
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.scorecard.parser import load_config
from health_pipeline.scorecard.reference import score

# Fewer training outcomes than this in either class (or known values of a metric) is too thin to fit.
MIN_PER_CLASS = 10
MIN_AUC = 0.55
# A metric ranked this alike (|Spearman rho|, training rows) to one already chosen adds nothing.
MAX_SPEARMAN = 0.9
QUANTILE_BINS = 5
MAX_POINTS = 4
GROUP = "fitted"
MISSING = "neutral"
# Family-wise error rate over all metrics tested: with ~20 candidates, a plain 5 % test per metric
# would let about one no-signal metric in per fit.
ALPHA = 0.05
BACKTEST_HINT = "try it with `health-pipeline backtest --config <file>`"
OUTCOME_KEY = ["account_id", "outcome_date"]
EVIDENCE_COLUMNS = ["lead_days", "n_train", "n_test", "auc_current_test", "auc_fitted_test"]
# The production blocks the suggested file keeps as they are, so it drops into place.
KEPT_BLOCKS = ("events", "exclude_identities", "power_roles", "signals", "onboarding", "band_overrides")


class _IndentedDumper(yaml.SafeDumper):
    """Indents a list under its key, as default.yaml does."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


@dataclass(frozen=True)
class FittedScorecard:
    yaml_text: str  # a complete configuration file, with a comment header of its evidence
    evidence: pd.DataFrame  # a row per lead: n_train, n_test, auc_current_test, auc_fitted_test (held out)
    split_date: dt.date  # outcomes before it trained the fit; on or after it they are held out


@dataclass(frozen=True)
class MetricFit:
    metric: str
    higher_is_better: bool
    auc: float  # training AUC, oriented so that 1 ranks every churned outcome below every retained one
    n: int  # training outcomes with a known value
    bins: list[dict]  # the file's bins: {range, points}


def suggest_scorecard(
    pairs: pd.DataFrame, production: HealthConfig, production_yaml: dict, *, lead_days: int | None = None,
    test_share: float = 0.3, components: int = 5,
) -> FittedScorecard:
    """A scorecard fitted on the outcomes before a time split, with its held-out evidence; see the module doc."""
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must lie strictly between 0 and 1, not {test_share}")
    if components < 1:
        raise ValueError(f"components must be at least 1, not {components}")
    pairs = _outcomes(pairs, production.account_metrics)
    if pairs.empty:
        raise ValueError("pairs has no churned or retained outcomes to fit on")
    leads = sorted(int(lead) for lead in pairs["lead_days"].unique())
    lead = leads[0] if lead_days is None else int(lead_days)
    if lead not in leads:
        raise ValueError(f"pairs has no rows at lead {lead} days; leads present: {leads}")
    split_date = choose_split_date(pairs, test_share)
    train, _ = split_by_time(pairs[pairs["lead_days"] == lead], split_date)
    n_churned = int((train["outcome"] == CHURNED).sum())
    n_retained = len(train) - n_churned
    if min(n_churned, n_retained) < MIN_PER_CLASS:
        raise ValueError(
            f"too little history to fit a scorecard: the training outcomes (before {split_date}) at lead {lead} days "
            f"are {n_churned} churned and {n_retained} retained; at least {MIN_PER_CLASS} of each are needed"
        )
    fits = choose_metrics(train, account_metric_domains(production.tracked_events), components)
    body = {
        "groups": {GROUP: 100},
        "components": {f.metric: component_spec(f.metric, f.higher_is_better, f.bins) for f in fits},
    }
    # Bands do not change scores, so score the training rows first and choose the bands from them.
    draft = load_text(config_text(production_yaml, {**body, "bands": {"healthy": 100, "neutral": 0}}))
    healthy, neutral = choose_bands(train, fitted_scores(draft, train))
    body["bands"] = {"healthy": healthy, "neutral": neutral}
    config = load_text(config_text(production_yaml, body))
    evidence = _evidence(pairs, split_date, config)
    header = _header(pairs, split_date, lead, n_churned, n_retained, components, fits, (healthy, neutral), evidence)
    text = config_text(production_yaml, body, header)
    load_text(text)  # the file as delivered must load
    return FittedScorecard(yaml_text=text, evidence=evidence, split_date=split_date)


def fitted_scores(config: HealthConfig, rows: pd.DataFrame) -> pd.Series:
    """The score `config`'s base scorecard (segments ignored) gives each row's metric values.

    NaN where every metric the scorecard reads is null: such a row was not measured (its account was not
    scored that day), so it is left out of an AUC, as a null production health_score is.
    """
    card = config.scorecard
    metrics = list(card.metrics)
    values = rows.reindex(columns=metrics).apply(pd.to_numeric, errors="coerce").astype("float64")
    scores = []
    for row in values.itertuples(index=False):
        known = {m: float(v) for m, v in zip(metrics, row) if not math.isnan(v)}
        result = score(card, known).score if known else None
        scores.append(math.nan if result is None else result)
    return pd.Series(scores, index=rows.index, dtype="float64", name="fitted_score")


def choose_split_date(pairs: pd.DataFrame, test_share: float) -> dt.date:
    """The outcome date from which about `test_share` of the churned and retained outcomes (any lead) are held out."""
    outcomes = pairs.loc[pairs["outcome"].isin((CHURNED, *RETAINED)), OUTCOME_KEY].drop_duplicates()
    per_date = outcomes.groupby("outcome_date").size().sort_index()
    held_share = per_date[::-1].cumsum()[::-1] / len(outcomes)
    # The first date would hold out everything and train on nothing.
    candidates = held_share.iloc[1:]
    if candidates.empty:
        raise ValueError(f"a time split needs outcomes on at least two dates; pairs has {len(per_date)}")
    return (candidates - test_share).abs().idxmin()


def split_by_time(pairs: pd.DataFrame, split_date: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training, held out): outcomes dated before `split_date`, and on or after it."""
    before = pairs["outcome_date"] < split_date
    return pairs[before], pairs[~before]


def choose_metrics(train: pd.DataFrame, domains: dict[str, tuple[float, float]], components: int) -> list[MetricFit]:
    """The strongest metrics on the training rows, each binned and pointed; raises if none qualifies."""
    churned = (train["outcome"] == CHURNED).to_numpy()
    tested = []
    for metric in domains:
        values = train[metric].to_numpy(dtype="float64") if metric in train else np.full(len(train), np.nan)
        known = ~np.isnan(values)
        if min(churned[known].sum(), (~churned[known]).sum()) < MIN_PER_CLASS:
            continue
        raw = auc(churned, values)
        p_value = stats.mannwhitneyu(values[known & churned], values[known & ~churned]).pvalue
        # Lower values churn (raw > 0.5): higher is better.
        tested.append((-max(raw, 1 - raw), metric, raw >= 0.5, p_value))
    fits: list[MetricFit] = []
    for negative_auc, metric, higher, p_value in sorted(tested):
        # Bonferroni: the metric must be significant with every tested metric counted.
        if len(fits) == components or -negative_auc < MIN_AUC or p_value * len(tested) >= ALPHA:
            continue
        values = train[metric].to_numpy(dtype="float64")
        if any(_alike(values, train[f.metric].to_numpy(dtype="float64")) for f in fits):
            continue
        bins = fit_bins(values, churned, domains[metric], higher)
        if bins is not None:
            fits.append(MetricFit(metric, higher, -negative_auc, int((~np.isnan(values)).sum()), bins))
    if not fits:
        best = ", ".join(f"{m} {-a:.3f} (p {p:.2g})" for a, m, _, p in sorted(tested)[:3])
        raise ValueError(
            f"no metric qualifies: none of the {len(tested)} metrics with at least {MIN_PER_CLASS} known values per "
            f"class reaches a training AUC of {MIN_AUC}, significant at {ALPHA} after Bonferroni, with bins that "
            f"separate outcomes ({len(train)} training outcomes; strongest: {best or 'none'})"
        )
    return fits


def fit_bins(values: np.ndarray, churned: np.ndarray, domain: tuple[float, float], higher: bool) -> list[dict] | None:
    """Quantile bins with isotonic points from the known training values; None if they separate nothing."""
    known = ~np.isnan(values)
    values, retained = values[known], (~churned[known]).astype("float64")
    quantiles = np.quantile(values, np.arange(1, QUANTILE_BINS) / QUANTILE_BINS, method="linear")
    low, high = domain
    # An edge at a finite high leaves the bin [high, high], which a share of 1 can fill.
    edges = sorted({e for e in map(two_significant, quantiles) if low < e <= high and e != math.inf})
    if not edges:
        return None
    index = np.searchsorted(edges, values, side="right")
    counts = np.bincount(index, minlength=len(edges) + 1)
    kept = np.bincount(index, weights=retained, minlength=len(edges) + 1)
    filled = counts > 0
    position = np.arange(len(counts))
    isotonic = IsotonicRegression(increasing=higher, out_of_bounds="clip")
    isotonic.fit(position[filled], kept[filled] / counts[filled], sample_weight=counts[filled])
    share = isotonic.predict(position)
    span = share.max() - share.min()
    if span <= 0:
        return None
    points = np.floor(MAX_POINTS * (share - share.min()) / span + 0.5).astype(int).tolist()
    return bins_spec(edges, points, domain)


def bins_spec(edges: list[float], points: list[int], domain: tuple[float, float]) -> list[dict]:
    """The file's bins from the domain and its interior edges: [low, e1), [e1, e2), …, [ek, high) or [ek, high].

    Neighbours with equal points merge, since they score alike.
    """
    low, high = domain
    bounds = [low, *edges, high]
    merged: list[list] = []
    for i, p in enumerate(points):
        if merged and merged[-1][2] == p:
            merged[-1][1] = bounds[i + 1]
        else:
            merged.append([bounds[i], bounds[i + 1], p])
    closing = ")" if high == math.inf else "]"
    return [
        {"range": f"[{_edge(a)}, {_edge(b)}{closing if i == len(merged) - 1 else ')'}", "points": int(p)}
        for i, (a, b, p) in enumerate(merged)
    ]


def component_spec(metric: str, higher_is_better: bool, bins: list[dict]) -> dict:
    """One fitted component, named after its metric."""
    return {"group": GROUP, "metric": str(metric), "higher_is_better": bool(higher_is_better), "missing": MISSING,
            "bins": bins}


def config_text(production_yaml: dict, scorecard: dict, header: str = "") -> str:
    """A configuration file: the production file's kept blocks, then `scorecard`; no segments."""
    document = {k: production_yaml[k] for k in KEPT_BLOCKS if k in production_yaml} | {"scorecard": scorecard}
    # Flow style for leaves only, as default.yaml writes its bins: one line per bin.
    body = yaml.dump(document, Dumper=_IndentedDumper, sort_keys=False, default_flow_style=None, width=1000)
    return f"{header}\n{body}" if header else body


def load_text(text: str) -> HealthConfig:
    """load_config on `text`, through a temporary file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "suggested.yaml"
        path.write_text(text)
        return load_config(path)


def choose_bands(train: pd.DataFrame, scores: pd.Series) -> tuple[int, int]:
    """(healthy, neutral) from the training scores; the rule is stated in `_rule`."""
    known = scores.notna().to_numpy()
    values = scores.to_numpy()[known]
    churned = (train["outcome"] == CHURNED).to_numpy()[known]
    base = churned.mean()
    neutral = None
    for cut in range(100, 0, -1):
        below = values < cut
        if below.any() and churned[below].mean() >= 2 * base:
            neutral = cut
            break
    if neutral is None:
        neutral = _round(np.percentile(values, 25))
    healthy = max(_round(np.median(values)), neutral)
    return healthy, neutral


def _rule(components: int) -> list[str]:
    return [
        "Rule (health_pipeline.scorecard.fit): one row per outcome at the fit lead; downgrades ignored.",
        f"Metrics: each with at least {MIN_PER_CLASS} known values per class, ranked by training AUC in its",
        f"predictive direction (which gives higher_is_better); kept if AUC >= {MIN_AUC} and its Mann-Whitney",
        f"p-value x the number of metrics tested < {ALPHA} (Bonferroni), skipping one whose |Spearman rho| with a",
        f"chosen one exceeds {MAX_SPEARMAN}; at most {components} kept.",
        f"Bins: the {QUANTILE_BINS}-quantile edges of the training values, to 2 significant figures, deduplicated,",
        "from the metric's lowest value to its highest; neighbours with equal points merged.",
        "Points: training retained share per bin, made monotone with isotonic regression and scaled to",
        f"0..{MAX_POINTS} (0 for the worst bin). A null value scores `{MISSING}` (half the points) everywhere.",
        "Bands: neutral from the highest whole score below which the training churn rate is at least twice",
        "the base rate (else the lower quartile); healthy from the training median (not below neutral).",
    ]


def _outcomes(pairs: pd.DataFrame, metrics) -> pd.DataFrame:
    """Churned and retained rows, one per (lead, outcome), numeric, in a fixed order: input row order never matters."""
    missing = [c for c in ["lead_days", *OUTCOME_KEY, "outcome", "health_score"] if c not in pairs]
    if missing:
        raise ValueError(f"pairs lacks columns {missing}")
    rows = pairs[pairs["outcome"].isin((CHURNED, *RETAINED))].copy()
    rows["outcome_date"] = pd.to_datetime(rows["outcome_date"]).dt.date
    rows["lead_days"] = rows["lead_days"].astype("int64")
    for column in ["health_score", *(m for m in metrics if m in rows)]:
        rows[column] = pd.to_numeric(rows[column], errors="coerce").astype("float64")
    order = ["lead_days", "outcome_date", "account_id", *(["scorecard_version"] if "scorecard_version" in rows else [])]
    rows = rows.sort_values(order, kind="stable", na_position="last")
    return rows.drop_duplicates(["lead_days", *OUTCOME_KEY]).reset_index(drop=True)


def _alike(a: np.ndarray, b: np.ndarray) -> bool:
    both = ~np.isnan(a) & ~np.isnan(b)
    if both.sum() < 3:
        return False
    rho = stats.spearmanr(a[both], b[both]).statistic
    return bool(not np.isnan(rho) and abs(rho) > MAX_SPEARMAN)


def _evidence(pairs: pd.DataFrame, split_date: dt.date, config: HealthConfig) -> pd.DataFrame:
    rows = []
    for lead, group in pairs.groupby("lead_days", sort=True):
        train, test = split_by_time(group, split_date)
        churned = (test["outcome"] == CHURNED).to_numpy()
        rows.append({
            "lead_days": int(lead), "n_train": len(train), "n_test": len(test),
            "auc_current_test": auc(churned, test["health_score"]),
            "auc_fitted_test": auc(churned, fitted_scores(config, test)),
        })
    return pd.DataFrame(rows, columns=EVIDENCE_COLUMNS).astype({"lead_days": "int64", "n_train": "int64",
                                                                  "n_test": "int64"})


def _header(pairs, split_date, lead, n_churned, n_retained, components, fits, bands, evidence) -> str:
    outcomes = pairs.drop_duplicates(OUTCOME_KEY)
    held = int((outcomes["outcome_date"] >= split_date).sum())
    lines = [
        "Suggested scorecard, fitted on outcome history by health_pipeline.scorecard.fit.suggest_scorecard.",
        f"Review before use: this file never replaces the production scorecard by itself; {BACKTEST_HINT}.",
        "",
        f"Data: {len(outcomes)} churned or retained outcomes dated {outcomes['outcome_date'].min()} to "
        f"{outcomes['outcome_date'].max()}, at leads {', '.join(map(str, sorted(evidence['lead_days'])))} days.",
        f"Split by time at {split_date}: {len(outcomes) - held} outcomes before it trained the fit, {held} on or "
        "after it are held out and chose nothing.",
        f"Fitted at lead {lead} days on {n_churned + n_retained} training outcomes: {n_churned} churned, "
        f"{n_retained} retained (base churn rate {n_churned / (n_churned + n_retained):.1%}).",
        "",
        *_rule(components),
        "",
        "Chosen metrics (training AUC: P(churned outcome ranks worse than retained one), ties half):",
        *(f"  {f.metric}: AUC {f.auc:.3f}, {'higher' if f.higher_is_better else 'lower'} is better, "
          f"n {f.n}" for f in fits),
        f"Bands: healthy from {bands[0]}, neutral from {bands[1]}.",
        "",
        "Held-out AUC (outcomes on or after the split), production health_score vs this file:",
        *(f"  lead {r.lead_days} days: n_train {r.n_train}, n_test {r.n_test}, current {_fmt(r.auc_current_test)}, "
          f"fitted {_fmt(r.auc_fitted_test)}" for r in evidence.itertuples()),
    ]
    return "\n".join(f"# {line}".rstrip() for line in lines) + "\n"


def two_significant(value: float) -> float:
    """`value` rounded to 2 significant figures."""
    return float(f"{value:.2g}") + 0.0  # + 0.0 turns -0.0 into 0.0


def _edge(value: float) -> str:
    return "inf" if value == math.inf else "-inf" if value == -math.inf else f"{value:g}"


def _round(value: float) -> int:
    return int(math.floor(value + 0.5))


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"
