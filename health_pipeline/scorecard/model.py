"""The health configuration's domain model: what is measured, and the scorecards that score it.

A `HealthConfig` is what the YAML file (scorecard.parser) describes: the tracked events,
exclusions, power roles, onboarding measures and the segments with their effective
scorecards. Its two version hashes are the assets' code versions, so an edit marks exactly
the assets it affects stale. The score itself is computed in SQL by the account_health
asset; scorecard.reference holds the same rules in plain Python for the tests.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from health_pipeline.contract import account_metric_domains

DEFAULT_SEGMENT = "default"
MISSING_POLICIES = ("zero", "neutral", "exclude")
BANDS = ("healthy", "neutral", "at_risk")  # best to worst
# How every chart and page colours a band; the band's name is always shown beside it too.
BAND_COLOURS = {"healthy": "#2ca02c", "neutral": "#f0a30a", "at_risk": "#d62728"}
ACTIVATION_COLOURS = ("green", "yellow", "red")  # best to worst
ACTIVATION_BANDS = dict(zip(ACTIVATION_COLOURS, BANDS))
# digital_footprint: none (no contacts), light (1 to this minus one), broad (this or more);
# digital_footprint.broad_from in the file
BROAD_FOOTPRINT_CONTACTS = 5
# How many days the latest CSM pulse counts from its date; signals.pulse_days in the file
PULSE_DAYS = 30
# attribute -> kind; digital_footprint is derived from contacts_total
SEGMENT_ATTRIBUTES = {
    "plan": "text", "vertical": "text", "digital_footprint": "text", "arr": "number", "contacts_total": "number",
}
SEGMENT_OPERATORS = {"in": "list", "not_in": "list", "gte": "number", "gt": "number", "lte": "number", "lt": "number"}


def content_hash(payload) -> str:
    return hashlib.sha256(json.dumps(_as_jsonable(payload), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Bin:
    lower: float
    upper: float
    lower_inclusive: bool
    upper_inclusive: bool
    points: float

    @property
    def label(self) -> str:
        def edge(value: float) -> str:
            return "inf" if value == math.inf else "-inf" if value == -math.inf else f"{value:g}"

        return (
            f"{'[' if self.lower_inclusive else '('}{edge(self.lower)}, "
            f"{edge(self.upper)}{']' if self.upper_inclusive else ')'}"
        )

    def contains(self, value: float) -> bool:
        above = value >= self.lower if self.lower_inclusive else value > self.lower
        below = value <= self.upper if self.upper_inclusive else value < self.upper
        return above and below


@dataclass(frozen=True)
class Component:
    name: str
    group: str
    metric: str
    higher_is_better: bool
    missing: str
    bins: tuple[Bin, ...]

    @property
    def max_points(self) -> float:
        return max(b.points for b in self.bins)

    def bin_for(self, value: float) -> Bin:
        return next(b for b in self.bins if b.contains(value))


@dataclass(frozen=True)
class Scorecard:
    """One effective scorecard: the base, or a segment's base-plus-overrides."""

    groups: tuple[tuple[str, float], ...]  # (group, weight), in file order
    components: tuple[Component, ...]
    healthy_from: float
    neutral_from: float

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.metric for c in self.components))

    @property
    def version(self) -> str:
        """Content hash: changes exactly when some score could change. Order in the file doesn't matter."""
        return content_hash({
            "groups": sorted(self.groups),
            "components": sorted((c for c in self.components), key=lambda c: c.name),
            "bands": [self.healthy_from, self.neutral_from],
        })

    def band(self, score: float) -> str:
        if score >= self.healthy_from:
            return "healthy"
        return "neutral" if score >= self.neutral_from else "at_risk"


@dataclass(frozen=True)
class Condition:
    attribute: str
    operator: str
    value: float | tuple


@dataclass(frozen=True)
class Segment:
    name: str
    conditions: tuple[Condition, ...]  # all must hold; the default segment has none
    scorecard: Scorecard


@dataclass(frozen=True)
class Measure:
    name: str
    metric: str
    green: float  # at or above: green
    yellow: float  # at or above: yellow; below, or null: red

    def colour(self, value: float | None) -> str:
        if value is not None and value >= self.green:
            return "green"
        return "yellow" if value is not None and value >= self.yellow else "red"


@dataclass(frozen=True)
class Onboarding:
    within_days: int
    first_session_event: str
    measures: tuple[Measure, ...]
    # Onboarding also ends on the first day activation is green: from the next day the score bands the account.
    ends_on_green: bool = False

    def status(self, values: dict[str, float | None]) -> str:
        """The worst colour among the measures: one missing activation step is enough to act on."""
        colours = [m.colour(values.get(m.metric)) for m in self.measures]
        return max(colours, key=ACTIVATION_COLOURS.index)


@dataclass(frozen=True)
class BandOverride:
    """An explicit rule that caps the band: while every condition holds on an account's metrics
    (a null metric satisfies none), its band is at best `band_at_most` (band_source `override`)."""

    name: str
    conditions: tuple[Condition, ...]  # on account metrics; all must hold
    band_at_most: str


ALERT_KINDS = ("band_down", "score_drop", "onboarding_red", "power_contact_quiet")


@dataclass(frozen=True)
class SlackSink:
    """A Slack incoming webhook; its URL, a secret, is read from the environment variable named."""

    webhook_url_env: str

    @property
    def secrets(self) -> tuple[str, ...]:
        """The environment variables whose values no error text may show."""
        return (self.webhook_url_env,)


@dataclass(frozen=True)
class EmailSink:
    """An SMTP server and who gets each owner's message; the password comes from the environment."""

    host: str
    port: int
    sender: str
    to: tuple[tuple[str, str], ...]  # (owner, address)
    default_to: str | None
    username_env: str | None
    password_env: str | None
    starttls: bool

    def address(self, owner: str | None) -> str | None:
        return dict(self.to).get(owner or "", self.default_to)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The environment variables whose values no error text may show."""
        return tuple(name for name in (self.username_env, self.password_env) if name)


@dataclass(frozen=True)
class Alerts:
    """Who is told what when an account turns (assets/alerts): the rules, and where messages go.
    Fields in the order Alerts(...) takes them; the sinks come last."""

    score_drop_points: float = 15.0  # a drop of at least this many points over 7 days
    power_contact_quiet_days: int = 14  # a power contact with no activity for exactly this long
    timeout_seconds: float = 10.0  # per message, per sink
    # Hysteresis: a band move alerts only once the account has been in the new band this many days.
    min_days_in_new_band: int = 1
    # Tries before a message a sink refuses for good (a 4xx, an SMTP 5xx) is marked failed.
    max_attempts: int = 3
    slack: SlackSink | None = None
    email: EmailSink | None = None

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(name for name in ("slack", "email") if getattr(self, name) is not None)


@dataclass(frozen=True)
class HealthConfig:
    usage_events: tuple[str, ...]
    kpi_event: str
    feature_events: tuple[str, ...]
    exclude_identities: tuple[str, ...]
    power_roles: tuple[str, ...]
    onboarding: Onboarding
    segments: tuple[Segment, ...]  # in match order; the last is the default
    source: str
    alerts: Alerts = Alerts()
    band_overrides: tuple[BandOverride, ...] = ()
    broad_footprint_contacts: int = BROAD_FOOTPRINT_CONTACTS
    pulse_days: int = PULSE_DAYS

    @property
    def tracked_events(self) -> tuple[str, ...]:
        """Every event name the daily fact keeps a count column for."""
        return tuple(sorted({*self.usage_events, self.kpi_event, *self.feature_events}))

    @property
    def account_metrics(self) -> tuple[str, ...]:
        """The account rollup's metric columns for this configuration, in sync-table order."""
        return tuple(account_metric_domains(self.tracked_events))

    @property
    def scorecard(self) -> Scorecard:
        """The default segment's scorecard."""
        return self.segments[-1].scorecard

    @property
    def components(self) -> tuple[str, ...]:
        """Every component any segment scores, in first-seen order: the sync table's explanation columns."""
        return tuple(dict.fromkeys(c.name for s in self.segments for c in s.scorecard.components))

    @property
    def scored_metrics(self) -> tuple[str, ...]:
        """Every metric a component of any segment bins, an onboarding measure reads or a band override tests."""
        return tuple(dict.fromkeys(
            [c.metric for s in self.segments for c in s.scorecard.components]
            + [m.metric for m in self.onboarding.measures]
            + [c.attribute for o in self.band_overrides for c in o.conditions]
        ))

    @property
    def metrics_version(self) -> str:
        """Hash of everything that decides what is measured: the measuring stages' code version."""
        return content_hash({
            "events": [self.usage_events, self.kpi_event, self.feature_events],
            "exclude": self.exclude_identities,
            "power_roles": self.power_roles,
            "first_session_event": self.onboarding.first_session_event,
            "pulse_days": self.pulse_days,
        })

    @property
    def scoring_version(self) -> str:
        """Hash of everything that decides scores and bands: the scoring stages' code version."""
        return content_hash({
            "segments": [(s.name, s.conditions, s.scorecard.version) for s in self.segments],
            "onboarding": self.onboarding,
            "band_overrides": self.band_overrides,
            "broad_footprint_contacts": self.broad_footprint_contacts,
        })


def _as_jsonable(obj):
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _as_jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, dict):
        return {k: _as_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_as_jsonable(v) for v in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    return obj
