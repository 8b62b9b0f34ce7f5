"""The scoring rules in plain Python: the reference the SQL scorer is tested against.

The account_health asset scores in one set-based SQL statement; these functions compute the
same figures for one account, so tests (hypothesis included) can compare the two on any input.
docs/metrics.md defines the rules both follow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from health_pipeline.scorecard.model import (
    ACTIVATION_BANDS,
    BANDS,
    BROAD_FOOTPRINT_CONTACTS,
    BandOverride,
    Condition,
    HealthConfig,
    Scorecard,
    Segment,
)


@dataclass(frozen=True)
class ComponentResult:
    value: float | None
    bin: str | None
    points: float | None  # None when the component is excluded for a missing value
    points_possible: float
    score_lost: float  # health-score points this component cost, after weighting


@dataclass(frozen=True)
class ScoreResult:
    score: float | None
    components: dict[str, ComponentResult]

    @property
    def missing_components(self) -> tuple[str, ...]:
        return tuple(sorted(name for name, c in self.components.items() if c.value is None))

    @property
    def top_drag(self) -> str | None:
        """The component that cost the most score points; ties go to the first name."""
        lost = [(-c.score_lost, name) for name, c in self.components.items() if c.score_lost > 0]
        return min(lost)[1] if lost else None


def score(card: Scorecard, values: dict[str, float | None]) -> ScoreResult:
    """One account's score under `card`, from its metric values.

    Within a group, the share of points won; across groups, the weighted mean of those
    shares over the groups that have any points possible; x 100, one decimal. The warehouse
    scores in SQL; this is the same rule in plain Python, for tests and documentation.
    """
    won: dict[str, tuple[float | None, float]] = {}
    for c in card.components:
        value = values.get(c.metric)
        if value is None:
            points = {"zero": 0.0, "neutral": c.max_points / 2, "exclude": None}[c.missing]
        else:
            points = c.bin_for(float(value)).points
        won[c.name] = (points, 0.0 if points is None else c.max_points)
    group_possible = {g: 0.0 for g, _ in card.groups}
    group_won = {g: 0.0 for g, _ in card.groups}
    for c in card.components:
        points, possible = won[c.name]
        group_possible[c.group] += possible
        group_won[c.group] += points or 0.0
    weights = dict(card.groups)
    live = [g for g, _ in card.groups if group_possible[g] > 0]
    total_weight = sum(weights[g] for g in live)
    score = None
    if total_weight > 0:
        share = sum(weights[g] * group_won[g] / group_possible[g] for g in live) / total_weight
        score = round_half_away(100 * share, 1)
    results = {}
    for c in card.components:
        points, possible = won[c.name]
        value = values.get(c.metric)
        lost = 0.0
        if possible > 0 and total_weight > 0:
            lost = 100 * weights[c.group] * (possible - points) / group_possible[c.group] / total_weight
        results[c.name] = ComponentResult(
            value=value,
            bin=None if value is None else c.bin_for(float(value)).label,
            points=points,
            points_possible=possible,
            score_lost=lost,
        )
    return ScoreResult(score, results)


def digital_footprint(contacts_total: int | None, broad_from: int = BROAD_FOOTPRINT_CONTACTS) -> str | None:
    """How much of an account the product can see: none (no contacts), light (1 to broad_from - 1)
    or broad (broad_from or more)."""
    if contacts_total is None:
        return None
    if contacts_total == 0:
        return "none"
    return "light" if contacts_total < broad_from else "broad"


def condition_holds(condition: Condition, actual) -> bool:
    """A null attribute satisfies no condition, as in SQL."""
    if actual is None:
        return False
    value = condition.value
    return {
        "in": lambda: actual in value,
        "not_in": lambda: actual not in value,
        "gte": lambda: actual >= value,
        "gt": lambda: actual > value,
        "lte": lambda: actual <= value,
        "lt": lambda: actual < value,
    }[condition.operator]()


def segment_for(config: HealthConfig, attributes: dict) -> Segment:
    """The first segment whose conditions all hold; the default segment (last) has none."""
    return next(s for s in config.segments if all(condition_holds(c, attributes.get(c.attribute))
                                                   for c in s.conditions))


def band_cap(config: HealthConfig, values: dict) -> BandOverride | None:
    """The band override that caps this account's band: of those whose every condition holds, the
    one with the worst band, the first in the file among equals; None when none holds."""
    holding = [o for o in config.band_overrides
               if all(condition_holds(c, values.get(c.attribute)) for c in o.conditions)]
    return max(holding, key=lambda o: BANDS.index(o.band_at_most), default=None)


def activated_before(config: HealthConfig, days_as_customer: int | None,
                     earlier: tuple[tuple[int, dict], ...]) -> bool:
    """Whether onboarding already ended on green activation: with ends_on_green, some earlier day
    of the customer's (0 <= days as customer then < now) had every measure green."""
    return config.onboarding.ends_on_green and days_as_customer is not None and any(
        0 <= then < days_as_customer and config.onboarding.status(values) == "green" for then, values in earlier)


def assess(config: HealthConfig, account: dict, earlier: tuple[tuple[int, dict], ...] = ()) -> dict:
    """Reference for one sync-table row, from the account's attributes and metrics.

    `account` holds plan, vertical, arr, every metric, and days_as_customer (D minus
    customer_since, None if unknown); `earlier` the account's metrics on earlier days, each with
    its days as customer then, which onboarding.ends_on_green reads. The warehouse does this in
    SQL; this is for tests.
    """
    footprint = digital_footprint(account.get("contacts_total"), config.broad_footprint_contacts)
    segment = segment_for(config, {**account, "digital_footprint": footprint})
    result = score(segment.scorecard, account)
    days = account.get("days_as_customer")
    in_onboarding = (days is not None and days < config.onboarding.within_days
                     and not activated_before(config, days, earlier))
    status = config.onboarding.status(account) if in_onboarding else None
    if in_onboarding:
        band, source = ACTIVATION_BANDS[status], "activation"
    else:
        band, source = None if result.score is None else segment.scorecard.band(result.score), "score"
    cap = band_cap(config, account)
    if band is not None and cap is not None and BANDS.index(cap.band_at_most) > BANDS.index(band):
        band, source = cap.band_at_most, "override"
    return {
        "segment": segment.name,
        "health_score": result.score,
        "health_band": band,
        "band_source": source,
        "in_onboarding": in_onboarding,
        "activation_status": status,
        "top_drag": result.top_drag,
        "missing_components": ",".join(result.missing_components),
        "scorecard_version": segment.scorecard.version,
    }


def round_half_away(value: float, digits: int) -> float:
    """Round halves away from zero, as DuckDB's round() does."""
    scale = 10**digits
    return math.copysign(math.floor(abs(value) * scale + 0.5) / scale, value)
