"""Load and validate the health configuration (events and scorecard) from YAML.

The file is read when the definitions load, because it shapes the assets themselves: the
columns of the daily fact and the scoring assets' code version. Every problem is reported
as one ConfigError naming the file, the field path and the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from health_pipeline.contract import ACCOUNT_METRICS

DEFAULT_CONFIG_PATH = Path(__file__).parent / "scorecards" / "default.yaml"
MISSING_POLICIES = ("zero", "neutral", "exclude")
# Event names become column names, so they must be plain identifiers.
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])\s*$")


class ConfigError(ValueError):
    def __init__(self, path: Path | str, field: str, reason: str):
        super().__init__(f"{path}: {field}: {reason}")
        self.path, self.field, self.reason = str(path), field, reason


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
    components: tuple[Component, ...]
    healthy_from: float
    neutral_from: float

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.metric for c in self.components))

    def band(self, score: float) -> str:
        if score >= self.healthy_from:
            return "healthy"
        return "neutral" if score >= self.neutral_from else "at_risk"

    def score(self, values: dict[str, float | None]) -> tuple[float | None, dict[str, float | None]]:
        """Reference scoring of one account's metric values: (score, points won per component).

        The warehouse scores in SQL; this is the same rule in plain Python, for tests.
        """
        won: dict[str, float | None] = {}
        possible = 0.0
        for c in self.components:
            value = values.get(c.metric)
            if value is None:
                won[c.name] = {"zero": 0.0, "neutral": c.max_points / 2, "exclude": None}[c.missing]
            else:
                won[c.name] = c.bin_for(float(value)).points
            possible += 0.0 if won[c.name] is None else c.max_points
        if possible == 0:
            return None, won
        total = sum(v for v in won.values() if v is not None)
        return round_half_away(100 * total / possible, 1), won


def round_half_away(value: float, digits: int) -> float:
    """Round halves away from zero, as DuckDB's round() does."""
    scale = 10**digits
    return math.copysign(math.floor(abs(value) * scale + 0.5) / scale, value)


@dataclass(frozen=True)
class Settings:
    usage_events: tuple[str, ...]
    kpi_event: str
    feature_events: tuple[str, ...]
    exclude_identities: tuple[str, ...]
    scorecard: Scorecard
    source: str

    @property
    def tracked_events(self) -> tuple[str, ...]:
        """Every event name the daily fact keeps a count column for."""
        return tuple(sorted({*self.usage_events, self.kpi_event, *self.feature_events}))

    @property
    def scorecard_version(self) -> str:
        """Content hash of the effective scorecard: changes exactly when scores would."""
        scorecard = _as_jsonable(self.scorecard)
        # Component order in the file changes no score, so it must not change the version.
        scorecard["components"].sort(key=lambda c: c["name"])
        payload = json.dumps(
            {
                "scorecard": scorecard,
                "events": [self.usage_events, self.kpi_event, self.feature_events],
                "exclude": self.exclude_identities,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _as_jsonable(obj):
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _as_jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, (list, tuple)):
        return [_as_jsonable(v) for v in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    return obj


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the file named by `path`, else HEALTH_CONFIG, else the shipped default."""
    path = Path(path or os.environ.get("HEALTH_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(path, "<file>", f"cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(path, "<file>", f"is not valid YAML ({exc})") from exc
    return _Parser(path).settings(raw)


class _Parser:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, field: str, reason: str) -> ConfigError:
        return ConfigError(self.path, field, reason)

    def mapping(self, value, field: str) -> dict:
        if not isinstance(value, dict) or not value:
            raise self.fail(field, "must be a non-empty mapping")
        return value

    def event_name(self, value, field: str) -> str:
        if not isinstance(value, str) or not _IDENTIFIER.match(value):
            raise self.fail(field, f"{value!r} is not an event name (lowercase letters, digits, _)")
        return value

    def event_list(self, value, field: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(field, "must be a non-empty list of event names")
        return tuple(self.event_name(v, f"{field}[{i}]") for i, v in enumerate(value))

    def number(self, value, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, f"{value!r} is not a number")
        return float(value)

    def settings(self, raw) -> Settings:
        raw = self.mapping(raw, "<root>")
        events = self.mapping(raw.get("events"), "events")
        patterns = raw.get("exclude_identities", [])
        if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
            raise self.fail("exclude_identities", "must be a list of non-empty LIKE patterns")
        return Settings(
            usage_events=self.event_list(events.get("usage"), "events.usage"),
            kpi_event=self.event_name(events.get("kpi"), "events.kpi"),
            feature_events=self.event_list(events.get("features"), "events.features"),
            exclude_identities=tuple(patterns),
            scorecard=self.scorecard(raw.get("scorecard")),
            source=str(self.path),
        )

    def scorecard(self, raw) -> Scorecard:
        raw = self.mapping(raw, "scorecard")
        components = self.mapping(raw.get("components"), "scorecard.components")
        bands = self.mapping(raw.get("bands"), "scorecard.bands")
        healthy = self.number(bands.get("healthy"), "scorecard.bands.healthy")
        neutral = self.number(bands.get("neutral"), "scorecard.bands.neutral")
        for name, cut in (("healthy", healthy), ("neutral", neutral)):
            if not 0 <= cut <= 100:
                raise self.fail(f"scorecard.bands.{name}", f"{cut:g} is outside 0..100")
        if neutral > healthy:
            raise self.fail("scorecard.bands", "neutral must not be above healthy")
        return Scorecard(
            components=tuple(self.component(n, c) for n, c in components.items()),
            healthy_from=healthy,
            neutral_from=neutral,
        )

    def component(self, name, raw) -> Component:
        field = f"scorecard.components.{name}"
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise self.fail(field, "component names must be lowercase identifiers")
        raw = self.mapping(raw, field)
        metric = raw.get("metric")
        if metric not in ACCOUNT_METRICS:
            raise self.fail(
                f"{field}.metric", f"unknown metric {metric!r}; known: {', '.join(ACCOUNT_METRICS)}"
            )
        missing = raw.get("missing", "zero")
        if missing not in MISSING_POLICIES:
            raise self.fail(f"{field}.missing", f"{missing!r} is not one of {MISSING_POLICIES}")
        higher_is_better = raw.get("higher_is_better", True)
        if not isinstance(higher_is_better, bool):
            raise self.fail(f"{field}.higher_is_better", "must be true or false")
        bins = raw.get("bins")
        if not isinstance(bins, list) or not bins:
            raise self.fail(f"{field}.bins", "must be a non-empty list")
        parsed = tuple(self.bin(b, f"{field}.bins[{i}]") for i, b in enumerate(bins))
        self.check_coverage(parsed, ACCOUNT_METRICS[metric], f"{field}.bins")
        if max(b.points for b in parsed) <= 0:
            raise self.fail(f"{field}.bins", "at least one bin must award points")
        return Component(name, metric, higher_is_better, missing, parsed)

    def bin(self, raw, field: str) -> Bin:
        raw = self.mapping(raw, field)
        match = _INTERVAL.match(str(raw.get("range", "")))
        if not match:
            raise self.fail(f"{field}.range", 'must look like "[0, 10)" or "(0.5, inf]"')
        left, lo, hi, right = match.groups()
        try:
            lower, upper = float(lo), float(hi)
        except ValueError:
            raise self.fail(f"{field}.range", f"edges {lo!r}, {hi!r} are not numbers") from None
        if lower > upper or (lower == upper and not (left == "[" and right == "]")):
            raise self.fail(f"{field}.range", "is empty")
        points = self.number(raw.get("points"), f"{field}.points")
        if points < 0:
            raise self.fail(f"{field}.points", "must not be negative")
        return Bin(lower, upper, left == "[", right == "]", points)

    def check_coverage(self, bins: tuple[Bin, ...], domain: tuple[float, float], field: str):
        """Bins, in order, must tile the metric's range: each starts where the last ended."""
        lo, hi = domain
        first, last = bins[0], bins[-1]
        if first.lower > lo or (first.lower == lo and not first.lower_inclusive and lo != -math.inf):
            raise self.fail(field, f"values from {lo:g} up to {first.label} fall in no bin")
        for i, (prev, nxt) in enumerate(zip(bins, bins[1:]), start=1):
            if nxt.lower != prev.upper:
                kind = "gap" if nxt.lower > prev.upper else "overlap"
                raise self.fail(f"{field}[{i}]", f"{kind} between {prev.label} and {nxt.label}")
            if prev.upper_inclusive == nxt.lower_inclusive:
                kind = "overlap" if prev.upper_inclusive else "gap"
                raise self.fail(
                    f"{field}[{i}]", f"{kind} at {nxt.lower:g} between {prev.label} and {nxt.label}"
                )
        if last.upper < hi or (last.upper == hi and not last.upper_inclusive and hi != math.inf):
            raise self.fail(field, f"values above {last.label} up to {hi:g} fall in no bin")
