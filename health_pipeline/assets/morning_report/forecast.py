"""The renewals of the next quarter, and the ARR they are expected to lose, calibrated on outcomes.

Each account renewing within HORIZON_DAYS (its `days_to_renewal`, from the sync table) is given
the churn rate the backtest measured for its band at the backtest lead nearest its days to
renewal: among the outcomes whose account had that band that many days before, the share that
churned rather than renewed or expanded (export.backtest_bands; downgrades left out). That rate
is a calibration of the band on our own outcomes. The expected churned ARR is the sum of rate x
ARR; its 95 % interval is a percentile bootstrap (scipy) of the same outcomes, each (lead, band)
group resampled on its own, as the backtest resamples each class for its AUC interval. A group
with fewer than MIN_OUTCOMES outcomes calibrates nothing: its renewals' ARR is reported as not
forecast, never given a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

HORIZON_DAYS = 90  # the next quarter
WINDOWS = (30, 60, 90)  # the portfolio's renewal windows, in days from the report's date
MIN_OUTCOMES = 10  # a band's outcomes at a lead below which its churn rate is not used
BOOTSTRAP_SAMPLES = 1000
SEED = 0  # the bootstrap's, so a rebuilt report shows the same interval
UNSCORED = "unscored"  # the backtest's band of outcomes whose account had no band (backtest.UNSCORED)


@dataclass(frozen=True)
class Group:
    """The renewals that take one (lead, band)'s churn rate, and the outcomes behind it."""

    lead_days: int
    band: str
    outcomes: int
    churned: int
    renewals: int
    arr: float

    @property
    def calibrated(self) -> bool:
        return self.outcomes >= MIN_OUTCOMES

    @property
    def churn_rate(self) -> float | None:
        return self.churned / self.outcomes if self.outcomes else None

    @property
    def expected(self) -> float | None:
        return self.arr * self.churn_rate if self.calibrated else None


@dataclass(frozen=True)
class Forecast:
    """The next quarter's renewals: the naive ARR at risk beside the calibrated expectation."""

    renewals: list[dict]  # the accounts renewing within the horizon, soonest first, each with its lead and rate
    groups: list[Group] = field(default_factory=list)
    low: float | None = None
    high: float | None = None

    @property
    def arr(self) -> float:
        return sum(a["arr"] or 0 for a in self.renewals)

    @property
    def arr_at_risk(self) -> float:
        """The naive figure: all the ARR of renewals whose band is at risk."""
        return sum(a["arr"] or 0 for a in self.renewals if a["health_band"] == "at_risk")

    @property
    def calibrated(self) -> list[Group]:
        return [g for g in self.groups if g.calibrated]

    @property
    def expected(self) -> float | None:
        """The expected churned ARR of the renewals whose group is calibrated; None if none is."""
        return sum(g.expected for g in self.calibrated) if self.calibrated else None

    @property
    def forecast_arr(self) -> float:
        return sum(g.arr for g in self.calibrated)

    @property
    def outcomes(self) -> int:
        """The outcomes the calibrated groups rest on (an outcome counts once per lead it was read at)."""
        return sum(g.outcomes for g in self.calibrated)


def nearest_lead(days: int, leads: list[int]) -> int:
    """The backtest lead nearest `days` to renewal; between two, the shorter."""
    return min(leads, key=lambda lead: (abs(lead - days), lead))


def renewals_within(accounts: list[dict], days: int) -> list[dict]:
    """The accounts renewing from the report's day to `days` after it, soonest first."""
    renewing = [a for a in accounts if a["days_to_renewal"] is not None and 0 <= a["days_to_renewal"] <= days]
    return sorted(renewing, key=lambda a: (a["days_to_renewal"], -(a["arr"] or 0), a["account_id"]))


def forecast(accounts: list[dict], bands: list[dict]) -> Forecast:
    """The forecast of the accounts' renewals within HORIZON_DAYS, from `bands`: the backtest's
    rows (lead_days, health_band, outcomes, churned) of the scorecard in force."""
    renewals = renewals_within(accounts, HORIZON_DAYS)
    by_key = {(b["lead_days"], b["health_band"]): b for b in bands}
    leads = sorted({lead for lead, _ in by_key})
    if not leads:
        return Forecast([{**a, "lead_days": None, "churn_rate": None} for a in renewals])
    groups: dict[tuple[int, str], dict] = {}
    rows = []
    for account in renewals:
        key = (nearest_lead(account["days_to_renewal"], leads), account["health_band"] or UNSCORED)
        group = groups.setdefault(key, {"renewals": 0, "arr": 0.0})
        group["renewals"] += 1
        group["arr"] += account["arr"] or 0
        rows.append((account, key))
    made = {key: Group(key[0], key[1], int(by_key.get(key, {}).get("outcomes") or 0),
                       int(by_key.get(key, {}).get("churned") or 0), g["renewals"], g["arr"])
            for key, g in groups.items()}
    low, high = _interval([made[key] for key in sorted(made)])
    return Forecast([{**a, "lead_days": key[0], "churn_rate": made[key].churn_rate if made[key].calibrated else None}
                     for a, key in rows], sorted(made.values(), key=lambda g: (g.lead_days, g.band)), low, high)


def _interval(groups: list[Group]) -> tuple[float | None, float | None]:
    """The 95 % percentile bootstrap interval of the expected churned ARR of the calibrated groups:
    each group's outcomes (1 churned, 0 retained) resampled on their own."""
    calibrated = [g for g in groups if g.calibrated]
    if not calibrated:
        return None, None
    # A single outcome resamples to itself (and scipy refuses it): its share is fixed.
    varying = [g for g in calibrated if g.outcomes > 1]
    fixed = sum(g.expected for g in calibrated if g.outcomes == 1)
    if not varying:
        return fixed, fixed
    samples = tuple(np.repeat([1.0, 0.0], [g.churned, g.outcomes - g.churned]) for g in varying)
    arr = np.array([g.arr for g in varying])

    def expected(*resampled, axis=-1):
        return fixed + sum(weight * sample.mean(axis=axis) for weight, sample in zip(arr, resampled))

    interval = stats.bootstrap(samples, expected, vectorized=True, paired=False, method="percentile",
                               n_resamples=BOOTSTRAP_SAMPLES, confidence_level=0.95,
                               random_state=np.random.default_rng(SEED)).confidence_interval
    return float(interval.low), float(interval.high)
