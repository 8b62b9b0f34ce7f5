"""Read and validate the health configuration (what is measured, and how it is scored) from YAML.

The file is read when the definitions load, because it shapes the assets themselves: the
columns of the daily fact, the sync table's explanation columns and the scoring assets' code
version. Every problem is reported as one ConfigError naming the file, the field path and the
reason, so a bad file stops the code location from loading and nothing is written.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import yaml

from health_pipeline import settings
from health_pipeline.contract import account_metric_domains
from health_pipeline.scorecard.model import (
    DEFAULT_SEGMENT,
    MISSING_POLICIES,
    SEGMENT_ATTRIBUTES,
    SEGMENT_OPERATORS,
    Alerts,
    Bin,
    Component,
    Condition,
    EmailSink,
    HealthConfig,
    Measure,
    Onboarding,
    Scorecard,
    Segment,
    SlackSink,
)

# Names become column names, so they must be plain identifiers.
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])\s*$")


class ConfigError(ValueError):
    def __init__(self, path: Path | str, field: str, reason: str):
        super().__init__(f"{path}: {field}: {reason}")
        self.path, self.field, self.reason = str(path), field, reason


def load_config(path: str | Path | None = None) -> HealthConfig:
    """Read the file named by `path`, else HEALTH_CONFIG, else the shipped default."""
    path = Path(path) if path else settings.config_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(path, "<file>", f"cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(path, "<file>", f"is not valid YAML ({exc})") from exc
    return _Parser(path).config(raw)


def merge_overrides(base: dict, overrides: dict) -> dict:
    """A segment's scorecard: the base with its overrides applied.

    Mappings merge key by key, a null removes the key, and anything else (a bin list, a number)
    replaces the base value whole.
    """
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _Parser:
    def __init__(self, path: Path):
        self.path = path
        self.metric_domains: dict[str, tuple[float, float]] = {}

    def fail(self, field: str, reason: str) -> ConfigError:
        return ConfigError(self.path, field, reason)

    def mapping(self, value, field: str) -> dict:
        if not isinstance(value, dict) or not value:
            raise self.fail(field, "must be a non-empty mapping")
        return value

    def identifier(self, value, field: str, what: str = "event name") -> str:
        if not isinstance(value, str) or not _IDENTIFIER.match(value):
            raise self.fail(field, f"{value!r} is not a valid {what} (lowercase letters, digits, _)")
        return value

    def identifier_list(self, value, field: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(field, "must be a non-empty list of event names")
        return tuple(self.identifier(v, f"{field}[{i}]") for i, v in enumerate(value))

    def number(self, value, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, f"{value!r} is not a number")
        return float(value)

    def metric(self, value, field: str) -> str:
        if value not in self.metric_domains:
            raise self.fail(field, f"unknown metric {value!r}; known: {', '.join(self.metric_domains)}")
        return value

    def config(self, raw) -> HealthConfig:
        raw = self.mapping(raw, "<root>")
        events = self.mapping(raw.get("events"), "events")
        usage = self.identifier_list(events.get("usage"), "events.usage")
        kpi = self.identifier(events.get("kpi"), "events.kpi")
        features = self.identifier_list(events.get("features"), "events.features")
        tracked = tuple(sorted({*usage, kpi, *features}))
        self.metric_domains = account_metric_domains(tracked)
        patterns = raw.get("exclude_identities", [])
        if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
            raise self.fail("exclude_identities", "must be a list of non-empty LIKE patterns")
        roles = raw.get("power_roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) and r.strip() for r in roles):
            raise self.fail("power_roles", "must be a list of role names")
        base = self.mapping(raw.get("scorecard"), "scorecard")
        default = Segment(DEFAULT_SEGMENT, (), self.scorecard(base, "scorecard"))
        return HealthConfig(
            usage_events=usage,
            kpi_event=kpi,
            feature_events=features,
            exclude_identities=tuple(patterns),
            power_roles=tuple(r.strip().lower() for r in roles),
            onboarding=self.onboarding(raw.get("onboarding")),
            segments=(*self.segments(raw.get("segments", []), base), default),
            source=str(self.path),
            alerts=self.alerts(raw.get("alerts")),
        )

    def alerts(self, raw) -> Alerts:
        """The optional `alerts` block: thresholds, and the sinks, whose secrets are environment
        variables named here, never values in the file."""
        if raw is None:
            return Alerts()
        raw = self.mapping(raw, "alerts")
        unknown = set(raw) - {"score_drop_points", "power_contact_quiet_days", "timeout_seconds",
                              "min_days_in_new_band", "max_attempts", "slack", "email"}
        if unknown:
            raise self.fail(f"alerts.{sorted(unknown)[0]}", "is not a setting of alerts")
        defaults = Alerts()
        drop = self.number(raw.get("score_drop_points", defaults.score_drop_points), "alerts.score_drop_points")
        quiet = self.count(raw.get("power_contact_quiet_days", defaults.power_contact_quiet_days),
                           "alerts.power_contact_quiet_days", "days")
        settle = self.count(raw.get("min_days_in_new_band", defaults.min_days_in_new_band),
                            "alerts.min_days_in_new_band", "days")
        attempts = self.count(raw.get("max_attempts", defaults.max_attempts), "alerts.max_attempts", "attempts")
        timeout = self.number(raw.get("timeout_seconds", defaults.timeout_seconds), "alerts.timeout_seconds")
        if drop <= 0 or timeout <= 0:
            raise self.fail("alerts.score_drop_points" if drop <= 0 else "alerts.timeout_seconds", "must be above 0")
        return Alerts(drop, quiet, timeout, settle, attempts, self.slack(raw.get("slack")),
                      self.email(raw.get("email")))

    def count(self, value, field: str, unit: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.fail(field, f"must be a whole number of {unit}, 1 or more")
        return value

    def env_name(self, value, field: str) -> str:
        if not isinstance(value, str) or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
            raise self.fail(field, "must name an environment variable, such as HEALTH_ALERTS_SLACK_WEBHOOK "
                                   "(secrets never go in this file)")
        return value

    def slack(self, raw) -> SlackSink | None:
        if raw is None:
            return None
        raw = self.mapping(raw, "alerts.slack")
        return SlackSink(self.env_name(raw.get("webhook_url_env"), "alerts.slack.webhook_url_env"))

    def email(self, raw) -> EmailSink | None:
        if raw is None:
            return None
        raw = self.mapping(raw, "alerts.email")
        for field in ("host", "from"):
            if not isinstance(raw.get(field), str) or not raw[field].strip():
                raise self.fail(f"alerts.email.{field}", "is required")
        port = raw.get("port", 25)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise self.fail("alerts.email.port", "must be a port number")
        owners = self.mapping(raw["owners"], "alerts.email.owners") if "owners" in raw else {}
        if not all(isinstance(a, str) and "@" in a for a in owners.values()):
            raise self.fail("alerts.email.owners", "must map each owner to an email address")
        default_to = raw.get("default_to")
        if default_to is not None and not (isinstance(default_to, str) and "@" in default_to):
            raise self.fail("alerts.email.default_to", "must be an email address")
        if not owners and default_to is None:
            raise self.fail("alerts.email", "needs owners (owner: address) or default_to, or both")
        return EmailSink(
            host=raw["host"].strip(), port=port, sender=raw["from"].strip(),
            to=tuple(sorted((str(owner), address) for owner, address in owners.items())), default_to=default_to,
            username_env=self.env_name(raw["username_env"], "alerts.email.username_env")
            if "username_env" in raw else None,
            password_env=self.env_name(raw["password_env"], "alerts.email.password_env")
            if "password_env" in raw else None,
            starttls=bool(raw.get("starttls", False)),
        )

    def onboarding(self, raw) -> Onboarding:
        raw = self.mapping(raw, "onboarding")
        days = raw.get("within_days")
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise self.fail("onboarding.within_days", f"{days!r} is not a whole number of days")
        event = self.identifier(raw.get("first_session_event"), "onboarding.first_session_event")
        measures = []
        for name, spec in self.mapping(raw.get("measures"), "onboarding.measures").items():
            field = f"onboarding.measures.{name}"
            self.identifier(name, field, "measure name")
            spec = self.mapping(spec, field)
            green = self.number(spec.get("green"), f"{field}.green")
            yellow = self.number(spec.get("yellow"), f"{field}.yellow")
            if yellow > green:
                raise self.fail(f"{field}.yellow", "must not be above green")
            measures.append(Measure(name, self.metric(spec.get("metric"), f"{field}.metric"), green, yellow))
        return Onboarding(days, event, tuple(measures))

    def segments(self, raw, base: dict) -> list[Segment]:
        if not isinstance(raw, list):
            raise self.fail("segments", "must be a list of segments")
        segments, names = [], {DEFAULT_SEGMENT}
        for i, spec in enumerate(raw):
            field = f"segments[{i}]"
            spec = self.mapping(spec, field)
            name = self.identifier(spec.get("name"), f"{field}.name", "segment name")
            if name in names:
                raise self.fail(f"{field}.name", f"{name!r} is already used")
            names.add(name)
            conditions = self.conditions(spec.get("when"), f"{field}.when")
            overrides = spec.get("overrides", {})
            if not isinstance(overrides, dict):
                raise self.fail(f"{field}.overrides", "must be a mapping")
            unknown = set(overrides) - {"groups", "components", "bands"}
            if unknown:
                raise self.fail(f"{field}.overrides", f"unknown keys {sorted(unknown)}; use groups, components, bands")
            merged = merge_overrides(base, overrides)
            segments.append(Segment(name, conditions, self.scorecard(merged, f"{field}.overrides")))
        return segments

    def conditions(self, raw, field: str) -> tuple[Condition, ...]:
        raw = self.mapping(raw, field)
        conditions = []
        for attribute, tests in raw.items():
            at = f"{field}.{attribute}"
            if attribute not in SEGMENT_ATTRIBUTES:
                raise self.fail(at, f"unknown account attribute; known: {', '.join(SEGMENT_ATTRIBUTES)}")
            for operator, value in self.mapping(tests, at).items():
                kind = SEGMENT_OPERATORS.get(operator)
                if kind is None:
                    raise self.fail(f"{at}.{operator}", f"unknown test; use one of {', '.join(SEGMENT_OPERATORS)}")
                if kind == "number":
                    if SEGMENT_ATTRIBUTES[attribute] != "number":
                        raise self.fail(f"{at}.{operator}", f"{attribute} is text; use in or not_in")
                    value = self.number(value, f"{at}.{operator}")
                else:
                    if not isinstance(value, list) or not value:
                        raise self.fail(f"{at}.{operator}", "must be a non-empty list")
                    want = (int, float) if SEGMENT_ATTRIBUTES[attribute] == "number" else str
                    if not all(isinstance(v, want) and not isinstance(v, bool) for v in value):
                        raise self.fail(f"{at}.{operator}", f"values must all be {SEGMENT_ATTRIBUTES[attribute]}")
                    value = tuple(value)
                conditions.append(Condition(attribute, operator, value))
        return tuple(conditions)

    def scorecard(self, raw, field: str) -> Scorecard:
        raw = self.mapping(raw, field)
        groups = []
        for name, weight in self.mapping(raw.get("groups"), f"{field}.groups").items():
            self.identifier(name, f"{field}.groups.{name}", "group name")
            weight = self.number(weight, f"{field}.groups.{name}")
            if weight < 0:
                raise self.fail(f"{field}.groups.{name}", "weight must not be negative")
            groups.append((name, weight))
        components = tuple(
            self.component(n, c, f"{field}.components.{n}", dict(groups))
            for n, c in self.mapping(raw.get("components"), f"{field}.components").items()
        )
        for name, _ in groups:
            if not any(c.group == name for c in components):
                raise self.fail(f"{field}.groups.{name}", "no component belongs to this group")
        if sum(w for _, w in groups) <= 0:
            raise self.fail(f"{field}.groups", "at least one group needs a positive weight")
        bands = self.mapping(raw.get("bands"), f"{field}.bands")
        healthy = self.number(bands.get("healthy"), f"{field}.bands.healthy")
        neutral = self.number(bands.get("neutral"), f"{field}.bands.neutral")
        for name, cut in (("healthy", healthy), ("neutral", neutral)):
            if not 0 <= cut <= 100:
                raise self.fail(f"{field}.bands.{name}", f"{cut:g} is outside 0..100")
        if neutral > healthy:
            raise self.fail(f"{field}.bands", "neutral must not be above healthy")
        return Scorecard(tuple(groups), components, healthy, neutral)

    def component(self, name, raw, field: str, groups: dict) -> Component:
        self.identifier(name, field, "component name")
        raw = self.mapping(raw, field)
        group = raw.get("group")
        if group not in groups:
            raise self.fail(f"{field}.group", f"{group!r} is not a group; groups: {', '.join(groups)}")
        metric = self.metric(raw.get("metric"), f"{field}.metric")
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
        self.check_coverage(parsed, self.metric_domains[metric], f"{field}.bins")
        if max(b.points for b in parsed) <= 0:
            raise self.fail(f"{field}.bins", "at least one bin must award points")
        self.check_direction(parsed, higher_is_better, f"{field}.bins")
        return Component(name, group, metric, higher_is_better, missing, parsed)

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

    def check_direction(self, bins: tuple[Bin, ...], higher_is_better: bool, field: str):
        """Points must not fall as the metric improves, or tuning one bin could invert a score."""
        points = [b.points for b in bins]
        ordered = points == sorted(points) if higher_is_better else points == sorted(points, reverse=True)
        if not ordered:
            direction = "rise" if higher_is_better else "fall"
            raise self.fail(field, f"points must {direction} with the metric (higher_is_better is {higher_is_better})")
