"""Read and validate the health configuration (what is measured, and how it is scored) from YAML.

The file is read when the definitions load, because it shapes the assets themselves: the
columns of the daily fact, the sync table's explanation columns and the scoring assets' code
version. It is checked against a schema (KEYS and the limits below): a key the schema does not
know is refused with the nearest known one, a key given twice is refused with its lines, and
every number must be finite and within its bounds. Then the rules between fields: bins tile
their metric's range, points follow the metric's direction, every group has a component.

Every problem is reported at once: the parser goes on past a bad part wherever the rest can be
checked without it, and raises one ConfigError with a line per problem, `<file>: <field path>:
<reason>`, so a bad file stops the code location from loading and nothing is written.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import yaml

from health_pipeline import settings
from health_pipeline.contract import account_metric_domains
from health_pipeline.limits import Limit
from health_pipeline.scorecard.model import (
    BANDS,
    BROAD_FOOTPRINT_CONTACTS,
    DEFAULT_SEGMENT,
    MISSING_POLICIES,
    PULSE_DAYS,
    SEGMENT_ATTRIBUTES,
    SEGMENT_OPERATORS,
    Alerts,
    BandOverride,
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

# --- the schema ---------------------------------------------------------------------------------
# libyaml's parser (ten times faster than PyYAML's own) where PyYAML was built with it.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The keys of every mapping whose keys are fixed (groups, components, measures, segment tests and
# email owners are named by the user). Any other key is refused: a typo would otherwise change
# scores or drop alerts without a word.
SCORECARD_KEYS = ("groups", "components", "bands")
KEYS = {
    "<root>": ("events", "exclude_identities", "power_roles", "signals", "onboarding", "scorecard",
               "digital_footprint", "segments", "band_overrides", "alerts"),
    "events": ("usage", "kpi", "features"),
    "signals": ("pulse_days",),
    "digital_footprint": ("broad_from",),
    "onboarding": ("within_days", "first_session_event", "ends_on_green", "measures"),
    "band_override": ("name", "when", "band_at_most"),
    "measure": ("metric", "green", "yellow"),
    "scorecard": SCORECARD_KEYS,
    "bands": ("healthy", "neutral"),
    "component": ("group", "metric", "higher_is_better", "missing", "bins"),
    "bin": ("range", "points"),
    "segment": ("name", "when", "overrides"),
    "overrides": SCORECARD_KEYS,
    "alerts": ("score_drop_points", "power_contact_quiet_days", "timeout_seconds", "min_days_in_new_band",
               "max_attempts", "slack", "email"),
    "slack": ("webhook_url_env",),
    "email": ("host", "port", "from", "owners", "default_to", "username_env", "password_env", "starttls"),
}
# The bounds of every number (limits.Limit): finite, and wider than any real scorecard needs.
POINTS = Limit(0, 1000)  # a bin's points: only their ratios within a component matter
WEIGHT = Limit(0, 1000)  # a group's weight: only the ratios between groups matter
CUT_OFF = Limit(0, 100)  # a band's lowest score: scores run from 0 to 100
ONBOARDING_DAYS = Limit(0, 3650, "a whole number of days", whole=True)  # 0: no account is onboarding
PULSE_WINDOW = Limit(1, 3650, "a whole number of days", whole=True)  # from the pulse's own day
BROAD_FROM = Limit(1, 1_000_000, "a whole number of contacts", whole=True)  # 1: no account is light
ALERT_DAYS = Limit(1, 3650, "a whole number of days", whole=True)  # quiet days, days in a new band
SCORE_DROP = Limit(0, 100, "a number of points", above=True)  # a score cannot drop more than 100
TIMEOUT = Limit(0, 600, "a number of seconds", above=True)  # per message and sink: ten minutes at most
ATTEMPTS = Limit(1, 100, "a whole number of tries", whole=True)  # before a refusal for good is final
PORT = Limit(1, 65535, "a port number", whole=True)
SEGMENT_VALUE = Limit(-math.inf, math.inf, "a finite number")  # arr and contacts_total tests
# An onboarding threshold lies in its metric's range (contract.ACCOUNT_METRICS): `threshold`.

# Names become column names, so they must be plain identifiers.
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])\s*$")


class ConfigError(settings.SettingsError):
    """Problems in a configuration file: one line each, `<file>: <field path>: <reason>`.

    `problems` holds every (field, reason); `field` and `reason` are the first one's.
    """

    def __init__(self, path: Path | str, problems: Iterable[tuple[str, str]]):
        self.problems = tuple(problems)
        self.path = str(path)
        self.field, self.reason = self.problems[0]
        super().__init__(f"{path}: {field}: {reason}" for field, reason in self.problems)


def load_config(path: str | Path | None = None) -> HealthConfig:
    """Read the file named by `path`, else HEALTH_CONFIG, else the shipped default."""
    path = Path(path) if path else settings.config_path()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(path, [("<file>", f"cannot be read ({reason})")]) from None
    parser = _Parser(path)
    config = parser.attempt(parser.config, parser.read(text))
    if parser.problems:
        raise ConfigError(path, parser.problems)
    return config


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


def suggestion(name: object, known: Iterable[str]) -> str:
    """The nearest known name to a mistyped one, else every known name."""
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"


def _at(field: str, key: object) -> str:
    """The path of `key` in the mapping at `field`."""
    return str(key) if field == "<root>" else f"{field}.{key}"


def _repeated_keys(node: yaml.Node | None, field: str = "<root>", seen: set | None = None) -> Iterator[tuple]:
    """(field, reason) for each key given twice in a mapping: PyYAML would keep the last one silently."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:  # an alias repeats a node, not a key
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict = {}
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge":
                continue
            name = key.value if isinstance(key, yaml.ScalarNode) else repr(key.value)
            line = key.start_mark.line + 1
            if (key.tag, name) in first_line:
                yield _at(field, name), f"repeated on line {line} (first on line {first_line[key.tag, name]}); keep one"
            else:
                first_line[key.tag, name] = line
            yield from _repeated_keys(value, _at(field, name), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _repeated_keys(item, f"{field}[{i}]", seen)


class _Invalid(Exception):
    """A part of the file is invalid and its problems are recorded: skip what depends on it."""


INVALID = object()  # what `attempt` returns for an invalid part (None can be a valid value)


class _Parser:
    def __init__(self, path: Path):
        self.path = path
        self.problems: list[tuple[str, str]] = []
        self.metric_domains: dict[str, tuple[float, float]] | None = None  # None until events parse

    # --- recording problems, and going on past them ------------------------------------------------

    def note(self, field: str, reason: str) -> None:
        self.problems.append((field, reason))

    def fail(self, field: str, reason: str) -> _Invalid:
        self.note(field, reason)
        return _Invalid()

    def attempt(self, parse: Callable, *args):
        """parse(*args), or INVALID if that part is invalid (its problems recorded): the caller goes on
        with the rest."""
        try:
            return parse(*args)
        except _Invalid:
            return INVALID

    @staticmethod
    def complete(*parts) -> tuple:
        """The parts, if each is valid; else stop here (their problems are recorded already)."""
        if any(part is INVALID for part in parts):
            raise _Invalid()
        return parts

    # --- reading ------------------------------------------------------------------------------------

    def read(self, text: str):
        """The YAML document, after noting each repeated key."""
        loader = YAML_LOADER(text)
        try:
            node = loader.get_single_node()
            for field, reason in _repeated_keys(node):
                self.note(field, reason)
            return loader.construct_document(node) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise ConfigError(self.path, [("<file>", f"is not valid YAML: {exc.problem or exc.context}{where}")]) \
                from None
        except yaml.YAMLError as exc:
            raise ConfigError(self.path, [("<file>", f"is not valid YAML: {str(exc).splitlines()[0]}")]) from None
        finally:
            loader.dispose()

    # --- values ---------------------------------------------------------------------------------------

    def mapping(self, value, field: str, kind: str | None = None) -> dict:
        """A non-empty mapping; with `kind`, each key the schema does not know for it is noted."""
        if not isinstance(value, dict) or not value:
            raise self.fail(field, "must be a non-empty mapping")
        for key in value:
            if kind and key not in KEYS[kind]:
                self.note(_at(field, key), f"unknown key; {suggestion(key, KEYS[kind])}")
        return value

    def identifier(self, value, field: str, what: str = "event name") -> str:
        if not isinstance(value, str) or not _IDENTIFIER.match(value):
            raise self.fail(field, f"{value!r} is not a valid {what} (lowercase letters, digits, _)")
        return value

    def identifier_list(self, value, field: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(field, "must be a non-empty list of event names")
        return self.complete(*(self.attempt(self.identifier, v, f"{field}[{i}]") for i, v in enumerate(value)))

    def number(self, value, field: str, limit: Limit) -> float:
        if value is None:
            raise self.fail(field, f"is required: {limit}")
        if (refusal := limit.refusal(value)) is not None:
            raise self.fail(field, refusal)
        return value if limit.whole else float(value)

    def flag(self, value, field: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(field, "must be true or false")
        return value

    def metric(self, value, field: str) -> str:
        if self.metric_domains is None:
            raise _Invalid()  # unknown until the events parse; their problem is recorded
        if value not in self.metric_domains:
            raise self.fail(field, f"unknown metric {value!r}; {suggestion(value, self.metric_domains)}")
        return value

    def threshold(self, value, field: str, metric) -> float:
        """An onboarding threshold: a finite number within its metric's range (if the metric is valid)."""
        low, high = (-math.inf, math.inf) if metric is INVALID else self.metric_domains[metric]
        return self.number(value, field, Limit(low, high, "a finite number"))

    def env_name(self, value, field: str) -> str:
        if not isinstance(value, str) or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
            raise self.fail(field, "must name an environment variable, such as HEALTH_ALERTS_SLACK_WEBHOOK "
                                   "(secrets never go in this file)")
        return value

    # --- the blocks -----------------------------------------------------------------------------------

    def config(self, raw) -> HealthConfig:
        raw = self.mapping(raw, "<root>", "<root>")
        events = self.attempt(self.events, raw.get("events"))
        if events is not INVALID:
            self.metric_domains = account_metric_domains(tuple(sorted({*events[0], events[1], *events[2]})))
        patterns = self.attempt(self.text_list, raw.get("exclude_identities", []), "exclude_identities",
                                "must be a list of non-empty LIKE patterns")
        roles = self.attempt(self.text_list, raw.get("power_roles", []), "power_roles", "must be a list of role names")
        onboarding = self.attempt(self.onboarding, raw.get("onboarding"))
        before = len(self.problems)
        default = self.attempt(self.scorecard, raw.get("scorecard"), "scorecard")
        # A segment's scorecard is the base with its overrides: checked only on a sound base, or
        # each of the base's problems would be reported again under every segment.
        sound_base = raw["scorecard"] if len(self.problems) == before else INVALID
        segments = self.attempt(self.segments, raw.get("segments", []), sound_base)
        overrides = self.attempt(self.band_overrides, raw.get("band_overrides", []))
        alerts = self.attempt(self.alerts, raw.get("alerts"))
        pulse_days = self.attempt(self.setting, raw, "signals", "pulse_days", PULSE_WINDOW, PULSE_DAYS)
        broad_from = self.attempt(self.setting, raw, "digital_footprint", "broad_from", BROAD_FROM,
                                  BROAD_FOOTPRINT_CONTACTS)
        (usage, kpi, features), patterns, roles, onboarding, default, segments, overrides, alerts, pulse_days, \
            broad_from = self.complete(events, patterns, roles, onboarding, default, segments, overrides, alerts,
                                       pulse_days, broad_from)
        return HealthConfig(
            usage_events=usage,
            kpi_event=kpi,
            feature_events=features,
            exclude_identities=tuple(patterns),
            power_roles=tuple(r.strip().lower() for r in roles),
            onboarding=onboarding,
            segments=(*segments, Segment(DEFAULT_SEGMENT, (), default)),
            source=str(self.path),
            alerts=alerts,
            band_overrides=overrides,
            broad_footprint_contacts=broad_from,
            pulse_days=pulse_days,
        )

    def setting(self, raw: dict, block: str, key: str, limit: Limit, default):
        """A number in an optional block of one setting: `block.key`, else `default`."""
        if block not in raw:
            return default
        section = self.mapping(raw[block], block, block)
        return self.number(section.get(key, default), f"{block}.{key}", limit)

    def events(self, raw) -> tuple:
        raw = self.mapping(raw, "events", "events")
        return self.complete(
            self.attempt(self.identifier_list, raw.get("usage"), "events.usage"),
            self.attempt(self.identifier, raw.get("kpi"), "events.kpi"),
            self.attempt(self.identifier_list, raw.get("features"), "events.features"),
        )

    def text_list(self, value, field: str, reason: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(field, reason)
        return value

    def alerts(self, raw) -> Alerts:
        """The optional `alerts` block: thresholds, and the sinks, whose secrets are environment
        variables named here, never values in the file."""
        if raw is None:
            return Alerts()
        raw = self.mapping(raw, "alerts", "alerts")
        defaults = Alerts()

        def setting(name: str, parse: Callable, *args):
            return self.attempt(parse, raw.get(name, getattr(defaults, name)), f"alerts.{name}", *args)

        return Alerts(*self.complete(
            setting("score_drop_points", self.number, SCORE_DROP),
            setting("power_contact_quiet_days", self.number, ALERT_DAYS),
            setting("timeout_seconds", self.number, TIMEOUT),
            setting("min_days_in_new_band", self.number, ALERT_DAYS),
            setting("max_attempts", self.number, ATTEMPTS),
            self.attempt(self.slack, raw.get("slack")),
            self.attempt(self.email, raw.get("email")),
        ))

    def slack(self, raw) -> SlackSink | None:
        if raw is None:
            return None
        raw = self.mapping(raw, "alerts.slack", "slack")
        return SlackSink(self.env_name(raw.get("webhook_url_env"), "alerts.slack.webhook_url_env"))

    def email(self, raw) -> EmailSink | None:
        if raw is None:
            return None
        raw = self.mapping(raw, "alerts.email", "email")

        def field(name: str, parse: Callable, *args, default=None):
            """The field parsed, else `default` when it is not given."""
            return self.attempt(parse, raw[name], f"alerts.email.{name}", *args) if name in raw else default

        host, sender, port, owners, default_to, username_env, password_env, starttls = self.complete(
            self.attempt(self.required_text, raw.get("host"), "alerts.email.host"),
            self.attempt(self.required_text, raw.get("from"), "alerts.email.from"),
            field("port", self.number, PORT, default=25),
            field("owners", self.owners, default={}),
            field("default_to", self.address),
            field("username_env", self.env_name),
            field("password_env", self.env_name),
            field("starttls", self.flag, default=False),
        )
        if not owners and default_to is None:
            raise self.fail("alerts.email", "needs owners (owner: address) or default_to, or both")
        return EmailSink(
            host=host, port=port, sender=sender, to=tuple(sorted((str(o), a) for o, a in owners.items())),
            default_to=default_to, username_env=username_env, password_env=password_env, starttls=starttls,
        )

    def required_text(self, value, field: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, "is required")
        return value.strip()

    def address(self, value, field: str) -> str | None:
        if value is not None and not (isinstance(value, str) and "@" in value):
            raise self.fail(field, "must be an email address")
        return value

    def owners(self, value, field: str) -> dict:
        owners = self.mapping(value, field)
        if not all(isinstance(a, str) and "@" in a for a in owners.values()):
            raise self.fail(field, "must map each owner to an email address")
        return owners

    def onboarding(self, raw) -> Onboarding:
        raw = self.mapping(raw, "onboarding", "onboarding")
        return Onboarding(*self.complete(
            self.attempt(self.number, raw.get("within_days"), "onboarding.within_days", ONBOARDING_DAYS),
            self.attempt(self.identifier, raw.get("first_session_event"), "onboarding.first_session_event"),
            self.attempt(self.measures, raw.get("measures")),
            self.attempt(self.flag, raw.get("ends_on_green", False), "onboarding.ends_on_green"),
        ))

    def measures(self, raw) -> tuple[Measure, ...]:
        raw = self.mapping(raw, "onboarding.measures")
        return self.complete(*(self.attempt(self.measure, name, spec, f"onboarding.measures.{name}")
                               for name, spec in raw.items()))

    def measure(self, name, spec, field: str) -> Measure:
        self.identifier(name, field, "measure name")
        spec = self.mapping(spec, field, "measure")
        metric = self.attempt(self.metric, spec.get("metric"), f"{field}.metric")
        green = self.attempt(self.threshold, spec.get("green"), f"{field}.green", metric)
        yellow = self.attempt(self.threshold, spec.get("yellow"), f"{field}.yellow", metric)
        metric, green, yellow = self.complete(metric, green, yellow)
        if yellow > green:
            raise self.fail(f"{field}.yellow", "must not be above green")
        return Measure(name, metric, green, yellow)

    def segments(self, raw, base) -> tuple[Segment, ...]:
        if not isinstance(raw, list):
            raise self.fail("segments", "must be a list of segments")
        names = {DEFAULT_SEGMENT}
        return self.complete(*(self.attempt(self.segment, spec, f"segments[{i}]", base, names)
                               for i, spec in enumerate(raw)))

    def segment(self, spec, field: str, base, names: set[str]) -> Segment:
        spec = self.mapping(spec, field, "segment")
        name = self.attempt(self.segment_name, spec.get("name"), f"{field}.name", names)
        conditions = self.attempt(self.conditions, spec.get("when"), f"{field}.when")
        overrides = self.attempt(self.overrides, spec.get("overrides", {}), f"{field}.overrides")
        # Checked on a sound base only (see config); the merged scorecard's fields name the overrides.
        scorecard = INVALID if base is INVALID or overrides is INVALID else \
            self.attempt(self.scorecard, merge_overrides(base, overrides), f"{field}.overrides")
        return Segment(*self.complete(name, conditions, scorecard))

    def segment_name(self, value, field: str, names: set[str], what: str = "segment name") -> str:
        name = self.identifier(value, field, what)
        if name in names:
            raise self.fail(field, f"{name!r} is already used")
        names.add(name)
        return name

    def band_overrides(self, raw) -> tuple[BandOverride, ...]:
        if not isinstance(raw, list):
            raise self.fail("band_overrides", "must be a list of overrides")
        names: set[str] = set()
        return self.complete(*(self.attempt(self.band_override, spec, f"band_overrides[{i}]", names)
                               for i, spec in enumerate(raw)))

    def band_override(self, spec, field: str, names: set[str]) -> BandOverride:
        spec = self.mapping(spec, field, "band_override")
        return BandOverride(*self.complete(
            self.attempt(self.segment_name, spec.get("name"), f"{field}.name", names, "override name"),
            self.attempt(self.conditions, spec.get("when"), f"{field}.when", True),
            self.attempt(self.choice, spec.get("band_at_most"), f"{field}.band_at_most", BANDS),
        ))

    def overrides(self, value, field: str) -> dict:
        """A segment's overrides: their keys a scorecard's (an unknown one is noted and left out)."""
        if not isinstance(value, dict):
            raise self.fail(field, "must be a mapping")
        if value:
            self.mapping(value, field, "overrides")
        return {key: v for key, v in value.items() if key in SCORECARD_KEYS}

    def conditions(self, raw, field: str, on_metrics: bool = False) -> tuple[Condition, ...]:
        """A segment's tests of account attributes, or (`on_metrics`) a band override's of metrics."""
        raw = self.mapping(raw, field)
        per_attribute = self.complete(*(self.attempt(self.attribute_tests, attribute, tests, f"{field}.{attribute}",
                                                     on_metrics)
                                        for attribute, tests in raw.items()))
        return tuple(condition for conditions in per_attribute for condition in conditions)

    def attribute_tests(self, attribute, tests, field: str, on_metrics: bool) -> tuple[Condition, ...]:
        if on_metrics:
            self.metric(attribute, field)
        elif attribute not in SEGMENT_ATTRIBUTES:
            raise self.fail(field, f"unknown account attribute; {suggestion(attribute, SEGMENT_ATTRIBUTES)}")
        tests = self.mapping(tests, field)
        numeric = on_metrics or SEGMENT_ATTRIBUTES[attribute] == "number"
        return self.complete(*(self.attempt(self.condition, attribute, operator, value, f"{field}.{operator}",
                                            numeric)
                               for operator, value in tests.items()))

    def condition(self, attribute: str, operator, value, field: str, numeric: bool) -> Condition:
        kind = SEGMENT_OPERATORS.get(operator)
        if kind is None:
            raise self.fail(field, f"unknown test; {suggestion(operator, SEGMENT_OPERATORS)}")
        if kind == "number":
            if not numeric:
                raise self.fail(field, f"{attribute} is text; use in or not_in")
            return Condition(attribute, operator, self.number(value, field, SEGMENT_VALUE))
        if not isinstance(value, list) or not value:
            raise self.fail(field, "must be a non-empty list")
        valid = SEGMENT_VALUE.allows if numeric else (lambda v: isinstance(v, str))
        if not all(valid(v) for v in value):
            raise self.fail(field, f"values must all be {'finite numbers' if numeric else 'text'}")
        return Condition(attribute, operator, tuple(value))

    def scorecard(self, raw, field: str) -> Scorecard:
        raw = self.mapping(raw, field, "scorecard")
        groups = self.attempt(self.mapping, raw.get("groups"), f"{field}.groups")
        weights = self.attempt(self.weights, groups, f"{field}.groups")
        components = self.attempt(self.components, raw.get("components"), f"{field}.components", groups)
        bands = self.attempt(self.bands, raw.get("bands"), f"{field}.bands")
        weights, components, (healthy, neutral) = self.complete(weights, components, bands)
        for name, _ in weights:
            if not any(c.group == name for c in components):
                self.note(f"{field}.groups.{name}", "no component belongs to this group")
        if sum(w for _, w in weights) <= 0:
            self.note(f"{field}.groups", "at least one group needs a positive weight")
        return Scorecard(weights, components, healthy, neutral)

    def weights(self, groups, field: str) -> tuple[tuple[str, float], ...]:
        (groups,) = self.complete(groups)

        def weight(name, value) -> tuple[str, float]:
            self.identifier(name, f"{field}.{name}", "group name")
            return name, self.number(value, f"{field}.{name}", WEIGHT)

        return self.complete(*(self.attempt(weight, n, w) for n, w in groups.items()))

    def components(self, raw, field: str, groups) -> tuple[Component, ...]:
        raw = self.mapping(raw, field)
        return self.complete(*(self.attempt(self.component, n, c, f"{field}.{n}", groups) for n, c in raw.items()))

    def bands(self, raw, field: str) -> tuple[float, float]:
        raw = self.mapping(raw, field, "bands")
        healthy, neutral = self.complete(self.attempt(self.number, raw.get("healthy"), f"{field}.healthy", CUT_OFF),
                                         self.attempt(self.number, raw.get("neutral"), f"{field}.neutral", CUT_OFF))
        if neutral > healthy:
            raise self.fail(field, "neutral must not be above healthy")
        return healthy, neutral

    def component(self, name, raw, field: str, groups) -> Component:
        self.identifier(name, field, "component name")
        raw = self.mapping(raw, field, "component")
        group = self.attempt(self.group, raw.get("group"), f"{field}.group", groups)
        metric = self.attempt(self.metric, raw.get("metric"), f"{field}.metric")
        missing = self.attempt(self.choice, raw.get("missing", "zero"), f"{field}.missing", MISSING_POLICIES)
        higher_is_better = self.attempt(self.flag, raw.get("higher_is_better", True), f"{field}.higher_is_better")
        bins = self.attempt(self.bins, raw.get("bins"), f"{field}.bins", metric, higher_is_better)
        return Component(name, *self.complete(group, metric, higher_is_better, missing, bins))

    def choice(self, value, field: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(field, f"{value!r} is not one of {choices}")
        return value

    def group(self, value, field: str, groups) -> str:
        if groups is INVALID:
            raise _Invalid()  # the groups themselves are invalid: their problem is recorded
        if value not in groups:
            raise self.fail(field, f"{value!r} is not a group; {suggestion(value, groups)}")
        return value

    def bins(self, raw, field: str, metric, higher_is_better) -> tuple[Bin, ...]:
        """The bins; their coverage and direction are checked where the metric and direction are valid."""
        if not isinstance(raw, list) or not raw:
            raise self.fail(field, "must be a non-empty list")
        bins = self.complete(*(self.attempt(self.bin, b, f"{field}[{i}]") for i, b in enumerate(raw)))
        if metric is not INVALID:
            self.check_coverage(bins, self.metric_domains[metric], field)
        if max(b.points for b in bins) <= 0:
            raise self.fail(field, "at least one bin must award points")
        if higher_is_better is not INVALID:
            self.check_direction(bins, higher_is_better, field)
        return bins

    def bin(self, raw, field: str) -> Bin:
        raw = self.mapping(raw, field, "bin")
        points = self.attempt(self.number, raw.get("points"), f"{field}.points", POINTS)
        match = _INTERVAL.match(str(raw.get("range", "")))
        if not match:
            raise self.fail(f"{field}.range", 'must look like "[0, 10)" or "(0.5, inf]"')
        left, lo, hi, right = match.groups()
        try:
            lower, upper = float(lo), float(hi)
        except ValueError:
            lower = upper = math.nan
        if math.isnan(lower) or math.isnan(upper):
            raise self.fail(f"{field}.range", f"edges {lo!r}, {hi!r} are not numbers, inf or -inf")
        if lower > upper or (lower == upper and not (left == "[" and right == "]")):
            raise self.fail(f"{field}.range", "is empty")
        (points,) = self.complete(points)
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
