"""The scorecard: bins, weights, segments, activation, trend, bad files, and SQL against the reference."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import duckdb
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from health_pipeline.assets import change_params
from health_pipeline.assets.account_health.asset import (
    account_health_params,
    account_health_sql,
    load_scorecards,
    score_range,
)
from health_pipeline.assets.band_changes.asset import band_changes_sql
from health_pipeline.contract import account_metric_domains
from health_pipeline.export_files import export_params
from health_pipeline.scorecard.fit import load_text
from health_pipeline.scorecard.model import BANDS, HealthConfig, Measure
from health_pipeline.scorecard.parser import ConfigError, load_config, merge_overrides
from health_pipeline.scorecard.reference import assess, digital_footprint, score, segment_for
from health_pipeline.settings import DEFAULT_CONFIG_PATH
from health_pipeline.sql import PACKAGE_DIR, SqlFolder

SETTINGS = load_config()
SCORECARD = SETTINGS.scorecard
DOMAINS = account_metric_domains(SETTINGS.tracked_events)
# Every kind of rule the signals brought, on top of the default file: Power and Value groups,
# components on the new metrics and on Heap's flags, band overrides, onboarding that ends on
# green activation, and another footprint cut-off (docs/scorecard.md shows the first of these
# blocks; the rest give every new metric a component or an override test).
SIGNALS_BLOCKS = """
onboarding: {ends_on_green: true}
digital_footprint: {broad_from: 3}
scorecard:
  groups: {power: 20, value: 20}
  components:
    active_in_28_days:
      group: usage
      metric: is_active_28d
      bins: [{range: "[0, 1)", points: 0}, {range: "[1, 1]", points: 4}]
    power_contact_active:
      group: power
      metric: has_active_power_contact
      bins: [{range: "[0, 1)", points: 0}, {range: "[1, 1]", points: 4}]
    power_contacts_left:
      group: power
      metric: power_contacts_left_90d
      higher_is_better: false
      bins: [{range: "[0, 1)", points: 4}, {range: "[1, inf)", points: 0}]
    license_utilisation:
      group: value
      metric: license_utilisation
      missing: exclude
      bins: [{range: "[0, 0.5)", points: 0}, {range: "[0.5, 0.8)", points: 2}, {range: "[0.8, inf)", points: 4}]
    overdue:
      group: value
      metric: days_overdue
      higher_is_better: false
      missing: exclude
      bins: [{range: "[0, 1)", points: 4}, {range: "[1, 30)", points: 2}, {range: "[30, inf)", points: 0}]
    nps:
      group: sentiment
      metric: nps_90d
      missing: exclude
      bins: [{range: "[-100, 0)", points: 0}, {range: "[0, 30)", points: 2}, {range: "[30, 100]", points: 4}]
    urgent_tickets:
      group: sentiment
      metric: open_high_priority_tickets
      higher_is_better: false
      bins: [{range: "[0, 1)", points: 4}, {range: "[1, inf)", points: 0}]
    one_kpi_user:
      group: usage
      metric: at_most_one_kpi_user_28d
      higher_is_better: false
      bins: [{range: "[0, 1)", points: 4}, {range: "[1, 1]", points: 0}]
    pulse_age:
      group: sentiment
      metric: days_since_pulse
      higher_is_better: false
      missing: neutral
      bins: [{range: "[0, 30)", points: 4}, {range: "[30, 90)", points: 2}, {range: "[90, inf)", points: 0}]
    tickets_opened:
      group: sentiment
      metric: tickets_opened_28d
      higher_is_better: false
      bins: [{range: "[0, 3)", points: 4}, {range: "[3, inf)", points: 0}]
    time_to_close:
      group: sentiment
      metric: median_days_to_close_90d
      higher_is_better: false
      missing: exclude
      bins: [{range: "[0, 2)", points: 4}, {range: "[2, 7)", points: 2}, {range: "[7, inf)", points: 0}]
    overdue_amount:
      group: value
      metric: overdue_amount
      higher_is_better: false
      missing: zero
      bins: [{range: "[0, 1)", points: 4}, {range: "[1, inf)", points: 0}]
band_overrides:
  - name: red_pulse
    when: {pulse_score: {lt: 1}, days_since_pulse: {lt: 14}}
    band_at_most: at_risk
  - name: one_user
    when: {at_most_one_kpi_user_28d: {gte: 1}}
    band_at_most: neutral
  - name: gone_quiet
    when: {is_inactive_90d: {gte: 1}, contacts_total: {gt: 0}}
    band_at_most: at_risk
  - name: swamped
    when: {open_tickets: {gte: 5}, nps_responses_90d: {gt: 0}}
    band_at_most: neutral
"""


def signals_config() -> HealthConfig:
    """The default file with SIGNALS_BLOCKS merged in."""
    raw = merge_overrides(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()), yaml.safe_load(SIGNALS_BLOCKS))
    return load_text(yaml.safe_dump(raw, sort_keys=False))


SIGNALS = signals_config()
# The default file as it was before the pulse: no sentiment group, no pulse component.
WITHOUT_PULSE = load_text(yaml.safe_dump(merge_overrides(
    yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()),
    {"scorecard": {"groups": {"sentiment": None}, "components": {"pulse": None}}}), sort_keys=False))


def component(name: str, card=SCORECARD):
    return next(c for c in card.components if c.name == name)


@pytest.mark.parametrize(
    ("name", "value", "points"),
    [
        ("usage_level", 0, 0), ("usage_level", 0.5, 0), ("usage_level", 1, 1),
        ("usage_level", 49.999, 1), ("usage_level", 50, 2), ("usage_level", 600, 4), ("usage_level", 1e12, 4),
        ("usage_trend", -1, 0), ("usage_trend", -0.5, 1), ("usage_trend", -0.05, 3), ("usage_trend", 0.1, 4),
        ("breadth", 0.6, 4), ("breadth", 1.0, 4), ("breadth", 0.0999, 0),
        # concentration bins are closed on the right: 0.4 is still the best bin
        ("concentration", 0.4, 4), ("concentration", 0.4000001, 3), ("concentration", 0.85, 1),
        ("concentration", 1.0, 0),
        ("feature_depth", 0, 0), ("feature_depth", 1, 2), ("feature_depth", 2, 4),
    ],
)
def test_bin_matching_respects_edge_inclusivity(name, value, points):
    assert component(name).bin_for(value).points == points


@pytest.mark.parametrize(
    ("score", "band"),
    [(100, "healthy"), (70, "healthy"), (69.9, "neutral"), (40, "neutral"), (39.9, "at_risk"), (0, "at_risk")],
)
def test_band_cut_offs_are_inclusive_lower_bounds(score, band):
    assert SCORECARD.band(score) == band


def _write_variant(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    edit(raw)
    path = tmp_path / "scorecard.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _components(raw):
    return raw["scorecard"]["components"]


def _bins(raw, name):
    return _components(raw)[name]["bins"]


FULL = {"usage_28d": 700, "usage_change_pct": 0.5, "breadth_28d": 0.7, "top_user_share_28d": 0.3,
        "features_adopted_28d": 2}


# --- weights and renormalisation ----------------------------------------------------------------

def test_default_weights_equal_points_won_over_points_possible():
    # 1 + 2 + 3 + 4 + 2 = 12 of 20 points -> 60; by groups 40 x 3/8 + 40 x 7/8 + 20 x 2/4 = 60.
    values = {"usage_28d": 10, "usage_change_pct": -0.2, "breadth_28d": 0.5, "top_user_share_28d": 0.1,
              "features_adopted_28d": 1}
    assert score(SCORECARD, values).score == 60.0
    assert score(SCORECARD, FULL).score == 100.0


def test_excluded_components_renormalise_within_and_across_groups(tmp_path):
    path = _write_variant(tmp_path, lambda r: [_components(r)[c].update(missing="exclude")
                                               for c in ("usage_level", "usage_trend")])
    card = load_config(path).scorecard
    # Trend excluded: usage = level alone (4 of 4), so still 100 with everything else full.
    assert score(card, {**FULL, "usage_change_pct": None}).score == 100.0
    # Trend excluded, level 1 of 4: usage share 1/4. (40 x 0.25 + 40 + 20) / 100 = 70.
    result = score(card, {**FULL, "usage_28d": 10, "usage_change_pct": None})
    assert result.score == 70.0
    assert result.components["usage_trend"].points is None
    assert result.components["usage_trend"].points_possible == 0
    assert result.missing_components == ("pulse", "usage_trend")  # no pulse: excluded, as without the table
    # The whole usage group gone: the score is over adoption and depth alone (weight 60).
    # Adoption 4 + 0 of 8 -> 40 x 1/2 = 20, depth 20: 40 / 60 -> 66.7.
    result = score(card, {**FULL, "usage_28d": None, "usage_change_pct": None, "top_user_share_28d": 0.9})
    assert result.score == 66.7
    # Concentration cost 100 x 40 x 4/8 / 60 = 33.3 score points.
    assert result.top_drag == "concentration"
    assert result.components["concentration"].score_lost == pytest.approx(100 * 40 * 0.5 / 60)


def test_zero_and_neutral_missing_policies():
    # usage_trend is neutral (2 of 4), breadth is zero (0 of 4).
    result = score(SCORECARD, {**FULL, "usage_change_pct": None, "breadth_28d": None})
    # usage 40 x 6/8 + adoption 40 x 4/8 + depth 20 = 30 + 20 + 20 = 70
    assert result.score == 70.0
    assert result.components["usage_trend"].points == 2
    assert result.components["breadth"].points == 0
    assert result.missing_components == ("breadth", "pulse", "usage_trend")


def test_nothing_scorable_gives_no_score(tmp_path):
    path = _write_variant(tmp_path, lambda r: [c.update(missing="exclude") for c in _components(r).values()])
    assert score(load_config(path).scorecard, {}).score is None


# --- segments ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("attributes", "segment"),
    [
        ({"plan": "enterprise", "contacts_total": 3}, "enterprise"),  # first match wins
        ({"plan": "starter", "contacts_total": 3}, "light_footprint"),
        ({"plan": "starter", "contacts_total": 0}, "light_footprint"),
        ({"plan": "growth", "contacts_total": 5}, "default"),
        ({"plan": None, "contacts_total": 50}, "default"),
        ({"plan": "Enterprise", "contacts_total": 50}, "default"),  # values match exactly
    ],
)
def test_segment_choice(attributes, segment):
    attributes = {**attributes, "digital_footprint": digital_footprint(attributes["contacts_total"])}
    assert segment_for(SETTINGS, attributes).name == segment


def test_segment_overrides_merge_into_the_base():
    by_name = {s.name: s.scorecard for s in SETTINGS.segments}
    enterprise, light = by_name["enterprise"], by_name["light_footprint"]
    assert dict(enterprise.groups) == {"usage": 40, "adoption": 40, "depth": 20, "sentiment": 15, "relationship": 20}
    assert component("usage_level", enterprise).bins[1].upper == 150
    assert component("breadth", enterprise) == component("breadth")  # inherited unchanged
    assert component("power_contacts", enterprise).metric == "power_contacts_active_28d"
    assert [c.name for c in light.components] == ["usage_level", "usage_trend", "breadth", "feature_depth", "pulse"]
    assert dict(light.groups)["adoption"] == 20
    assert SETTINGS.components[-1] == "power_contacts"


def test_enterprise_power_contact_component():
    card = next(s.scorecard for s in SETTINGS.segments if s.name == "enterprise")
    values = {**FULL, "usage_28d": 2000, "power_contacts_active_28d": 0}
    # Everything full except relationship (0 of 4): 100 x 100 / 120 = 83.3.
    result = score(card, values)
    assert result.score == 83.3 and result.top_drag == "power_contacts"
    assert score(card, {**values, "power_contacts_active_28d": 2}).score == 100.0


# --- onboarding activation --------------------------------------------------------------------------

def test_activation_measure_colours_at_their_edges():
    measure = Measure("query_users", "run_query_users_28d", green=3, yellow=1)
    assert [measure.colour(v) for v in (5, 3, 2.99, 1, 0.99, 0, None)] == [
        "green", "green", "yellow", "yellow", "red", "red", "red"]


def test_activation_status_is_the_worst_measure():
    onboarding = SETTINGS.onboarding
    assert onboarding.within_days == 90
    good = {"first_session_activated_share": 0.6, "run_query_users_28d": 4, "group_by_users_28d": 2}
    assert onboarding.status(good) == "green"
    assert onboarding.status({**good, "group_by_users_28d": 1}) == "yellow"
    assert onboarding.status({**good, "group_by_users_28d": 1, "run_query_users_28d": 0}) == "red"
    assert onboarding.status({**good, "first_session_activated_share": None}) == "red"  # nobody has started


def test_onboarding_band_comes_from_activation():
    account = {"plan": "growth", "contacts_total": 10, **FULL, "first_session_activated_share": 0.3,
               "run_query_users_28d": 4, "group_by_users_28d": 2}
    day_89 = assess(SETTINGS, {**account, "days_as_customer": 89})
    assert (day_89["health_score"], day_89["activation_status"], day_89["health_band"]) == (100.0, "yellow", "neutral")
    day_90 = assess(SETTINGS, {**account, "days_as_customer": 90})
    assert (day_90["in_onboarding"], day_90["health_band"]) == (False, "healthy")
    assert assess(SETTINGS, {**account, "days_as_customer": None})["in_onboarding"] is False


# --- bad configuration -----------------------------------------------------------------------------

def _segment(raw, **spec):
    raw["segments"][0].update(spec)


@pytest.mark.parametrize(
    ("edit", "field", "reason"),
    [
        (lambda r: _components(r)["usage_level"].update(metric="logins_28d"),
         "scorecard.components.usage_level.metric", "unknown metric 'logins_28d'"),
        (lambda r: _bins(r, "usage_level").__setitem__(1, {"range": "[2, 50)", "points": 1}),
         "scorecard.components.usage_level.bins[1]", "gap between [0, 1) and [2, 50)"),
        (lambda r: _bins(r, "usage_level").__setitem__(1, {"range": "[0.5, 50)", "points": 1}),
         "scorecard.components.usage_level.bins[1]", "overlap"),
        (lambda r: _bins(r, "breadth").__setitem__(1, {"range": "(0.1, 0.25)", "points": 1}),
         "scorecard.components.breadth.bins[1]", "gap at 0.1"),
        (lambda r: _bins(r, "usage_level").pop(),
         "scorecard.components.usage_level.bins", "fall in no bin"),
        (lambda r: _bins(r, "usage_level").__setitem__(0, {"range": "(0, 1)", "points": 0}),
         "scorecard.components.usage_level.bins", "fall in no bin"),
        (lambda r: _bins(r, "usage_level").__setitem__(0, {"range": "[0, 1)", "points": -1}),
         "scorecard.components.usage_level.bins[0].points", "-1 is not a number from 0 to 1000"),
        (lambda r: _bins(r, "usage_level").__setitem__(0, {"range": "0..1", "points": 0}),
         "scorecard.components.usage_level.bins[0].range", "must look like"),
        (lambda r: _bins(r, "usage_level").__setitem__(4, {"range": "[600, inf)", "points": 2}),
         "scorecard.components.usage_level.bins", "points must rise with the metric"),
        (lambda r: r["scorecard"]["bands"].update(healthy=120),
         "scorecard.bands.healthy", "120 is not a number from 0 to 100"),
        (lambda r: r["scorecard"]["bands"].update(neutral=-5),
         "scorecard.bands.neutral", "-5 is not a number from 0 to 100"),
        (lambda r: r["scorecard"].update(components={}),
         "scorecard.components", "non-empty mapping"),
        (lambda r: r.update(scorecard={}),
         "scorecard", "non-empty mapping"),
        (lambda r: _components(r)["breadth"].update(missing="skip"),
         "scorecard.components.breadth.missing", "not one of"),
        (lambda r: r["scorecard"]["groups"].update(usage=-10),
         "scorecard.groups.usage", "-10 is not a number from 0 to 1000"),
        (lambda r: r["scorecard"]["groups"].update(value=10),
         "scorecard.groups.value", "no component belongs to this group"),
        (lambda r: _components(r)["breadth"].update(group="adoptoin"),
         "scorecard.components.breadth.group", "'adoptoin' is not a group"),
        (lambda r: r["scorecard"].update(groups={"usage": 0, "adoption": 0, "depth": 0, "sentiment": 0}),
         "scorecard.groups", "at least one group needs a positive weight"),
        (lambda r: r["events"].update(usage=["Run Query"]),
         "events.usage[0]", "is not a valid event name"),
        (lambda r: _segment(r, when={"seats": {"gte": 10}}),
         "segments[0].when.seats", "unknown account attribute"),
        (lambda r: _segment(r, when={"plan": {"gte": 10}}),
         "segments[0].when.plan.gte", "plan is text; use in or not_in"),
        (lambda r: _segment(r, when={"arr": {"between": [1, 2]}}),
         "segments[0].when.arr.between", "unknown test"),
        (lambda r: _segment(r, name="default"),
         "segments[0].name", "'default' is already used"),
        (lambda r: _segment(r, overrides={"groups": {"relationship": -1}}),
         "segments[0].overrides.groups.relationship", "-1 is not a number from 0 to 1000"),
        (lambda r: _segment(r, overrides={"components": {"power_contacts": {
            "group": "relationship", "metric": "power_contacts_active_28d", "bins": [{"range": "[0, inf)",
                                                                                    "points": 1}]}}}),
         "segments[0].overrides.components.power_contacts.group", "'relationship' is not a group"),
        (lambda r: _segment(r, overrides={"bands": {"healthy": 101}}),
         "segments[0].overrides.bands.healthy", "101 is not a number from 0 to 100"),
        (lambda r: r["onboarding"]["measures"]["query_users"].update(metric="queries"),
         "onboarding.measures.query_users.metric", "unknown metric 'queries'"),
        (lambda r: r["onboarding"]["measures"]["query_users"].update(yellow=5),
         "onboarding.measures.query_users.yellow", "must not be above green"),
        (lambda r: r["onboarding"].update(within_days=-1),
         "onboarding.within_days", "-1 is not a whole number of days from 0 to 3650"),
    ],
)
def test_bad_configuration_names_file_field_and_reason(tmp_path, edit, field, reason):
    path = _write_variant(tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.path == str(path)
    assert err.value.field == field
    assert reason in err.value.reason
    assert str(err.value).startswith(f"{path}: {field}: ")
    assert len(err.value.problems) == 1, err.value  # one mistake is one line, not a cascade


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="<file>: cannot be read"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("scorecard: [unclosed")
    with pytest.raises(ConfigError, match="<file>: is not valid YAML"):
        load_config(broken)


# --- versions ----------------------------------------------------------------------------------------

def test_versions_follow_content_not_layout(tmp_path):
    same = load_config(_write_variant(tmp_path, lambda r: _components(r).update(
        dict(reversed(list(_components(r).items()))))))
    assert same.scoring_version == SETTINGS.scoring_version
    assert same.scorecard.version == SCORECARD.version

    tuned = load_config(_write_variant(tmp_path, lambda r: _bins(r, "usage_level").__setitem__(
        1, {"range": "[1, 40)", "points": 1}) or _bins(r, "usage_level").__setitem__(
        2, {"range": "[40, 200)", "points": 2})))
    assert tuned.scoring_version != SETTINGS.scoring_version
    assert tuned.scorecard.version != SCORECARD.version
    assert tuned.metrics_version == SETTINGS.metrics_version  # a threshold is not a metric

    measured = load_config(_write_variant(tmp_path, lambda r: r.update(power_roles=["owner"])))
    assert measured.metrics_version != SETTINGS.metrics_version


# --- SQL scoring agrees with the reference, for any accounts and metric values ----------------------

D = dt.date(2026, 8, 31)
METRIC_COLUMNS = ", ".join(f"{m} DOUBLE" for m in DOMAINS)


def scoring_db() -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'; CREATE SCHEMA raw; CREATE SCHEMA core; CREATE SCHEMA export")
    SqlFolder(PACKAGE_DIR / "assets/raw_activity/asset.py").run(conn, "account_history")  # the pipeline's own table
    conn.execute("CREATE TABLE raw.outcomes (account_id VARCHAR, outcome_date DATE, outcome VARCHAR)")
    conn.execute(f"CREATE TABLE core.account_metrics (snapshot_date DATE, account_id VARCHAR, {METRIC_COLUMNS})")
    return conn


def insert_account(conn, account_id: str, account: dict, days: list[tuple[dt.date, dict]]):
    since = account.get("customer_since")
    conn.execute("INSERT INTO raw.account_history (account_id, name, owner, plan, arr, vertical, customer_since, "
                 "status) VALUES (?, ?, 'Owner', ?, ?, ?, ?, 'paying')",
                 [account_id, account_id, account.get("plan"), account.get("arr"), account.get("vertical"), since])
    names = list(DOMAINS)
    conn.executemany(
        f"INSERT INTO core.account_metrics VALUES (?, ?, {', '.join('?' * len(names))})",
        [[day, account_id, *(values.get(n) for n in names)] for day, values in days],
    )


def metric_value(metric):
    lo, hi = DOMAINS[metric]
    finite_hi = 1e6 if math.isinf(hi) else hi
    if metric == "contacts_total":
        return st.integers(0, 12).map(float)
    return st.one_of(st.none(), st.floats(lo, finite_hi, allow_nan=False), st.sampled_from([lo, finite_hi]))


accounts = st.fixed_dictionaries({
    "plan": st.sampled_from(["starter", "growth", "enterprise", None]),
    "arr": st.one_of(st.none(), st.floats(0, 1e6)),
    "vertical": st.sampled_from(["saas", "media", None]),
    "days_as_customer": st.one_of(st.none(), st.integers(0, 200)),  # not yet a customer: not scored
    **{m: metric_value(m) for m in DOMAINS},
})
# An earlier day's activation measures (days before D, values), which onboarding.ends_on_green reads.
earlier_days = st.lists(st.tuples(st.integers(1, 100), st.fixed_dictionaries(
    {m.metric: metric_value(m.metric) for m in SETTINGS.onboarding.measures})), max_size=2,
    unique_by=lambda day: day[0])


@pytest.mark.slow
@pytest.mark.parametrize("config", [SETTINGS, SIGNALS], ids=["default", "signals"])
@settings(max_examples=300, deadline=None)
@given(account=accounts, earlier=earlier_days)
def test_sql_matches_the_reference_for_any_account(config, account, earlier):
    if account["contacts_total"] is None:
        account["contacts_total"] = 0.0  # the rollup never leaves it null
    days = account["days_as_customer"]
    since = None if days is None else D - dt.timedelta(days=days)
    with scoring_db() as conn:
        insert_account(conn, "A", {**account, "customer_since": since},
                       [(D, account), *((D - dt.timedelta(days=before), values) for before, values in earlier)])
        load_scorecards(conn, config)
        sql = account_health_sql(config, with_history=False)
        row = conn.execute(sql, account_health_params(config, D, D)).df().iloc[0].to_dict()
    expected = assess(config, account, () if days is None else tuple((days - before, v) for before, v in earlier))
    got = {k: (None if isinstance(row[k], float) and math.isnan(row[k]) else row[k]) for k in expected}
    assert got == pytest.approx(expected)
    assert expected["health_score"] is None or 0 <= expected["health_score"] <= 100


@settings(max_examples=200, deadline=None)
@given(account=accounts)
def test_an_account_without_a_pulse_scores_as_if_there_were_no_pulse_table(account):
    """The missing-data policy (exclude) drops the pulse and its group, and the weights renormalise."""
    account = {**account, "pulse_score": None}
    with_pulse, without = assess(SETTINGS, account), assess(WITHOUT_PULSE, account)
    for column in ("segment", "health_score", "health_band", "band_source", "top_drag", "activation_status"):
        assert with_pulse[column] == without[column], column
    red = assess(SETTINGS, {**account, "pulse_score": 0.0})
    assert with_pulse["health_score"] is None or red["health_score"] <= with_pulse["health_score"]


@settings(max_examples=200, deadline=None)
@given(values=st.fixed_dictionaries({m: metric_value(m) for m in SCORECARD.metrics}), data=st.data())
def test_score_never_drops_when_a_higher_is_better_metric_rises(values, data):
    segment = data.draw(st.sampled_from(SETTINGS.segments))
    card = segment.scorecard
    c = data.draw(st.sampled_from([c for c in card.components if c.higher_is_better]))
    lo, hi = DOMAINS[c.metric]
    hi = 1e6 if math.isinf(hi) else hi
    before = data.draw(st.floats(lo, hi, allow_nan=False))
    after = data.draw(st.floats(before, hi, allow_nan=False))
    low = score(card, {**values, c.metric: before}).score
    high = score(card, {**values, c.metric: after}).score
    assert 0 <= low <= high <= 100


# --- trend and band changes across crafted days ------------------------------------------------------

GOOD = {**FULL, "contacts_total": 10}                       # 100: healthy
MID = {**GOOD, "usage_28d": 0, "usage_change_pct": -0.6, "features_adopted_28d": 0}  # adoption only: 40, neutral
BAD = {**MID, "breadth_28d": 0.0, "top_user_share_28d": None}  # 0: at_risk
START = dt.date(2026, 7, 1)


def day(n: int) -> dt.date:
    return START + dt.timedelta(days=n - 1)


def crafted_history(conn):
    """Days 1-10 healthy, 11-20 neutral, 21-35 at risk."""
    plan = [(day(n), GOOD if n <= 10 else MID if n <= 20 else BAD) for n in range(1, 36)]
    insert_account(conn, "T", {"plan": "growth", "customer_since": dt.date(2024, 1, 1)}, plan)


def health(conn, n: int) -> dict:
    return conn.execute("SELECT * FROM core.account_health WHERE snapshot_date = ?", [day(n)]).df().iloc[0].to_dict()


def test_trend_and_band_changes_across_days():
    with scoring_db() as conn:
        crafted_history(conn)
        list(score_range(conn, SETTINGS, day(1), day(35)))  # scores, audits, commits
        assert [health(conn, n)["health_score"] for n in (1, 11, 21)] == [100.0, 40.0, 0.0]
        first = health(conn, 1)
        assert math.isnan(first["previous_score_7d"]) and first["previous_band"] is None
        assert not first["band_changed"]
        d11 = health(conn, 11)
        assert (d11["previous_band"], d11["health_band"], d11["band_changed"]) == ("healthy", "neutral", True)
        assert (d11["previous_score_7d"], d11["score_delta_7d"]) == (100.0, -60.0)      # day 4
        assert not health(conn, 12)["band_changed"]
        d21 = health(conn, 21)
        assert (d21["previous_band"], d21["health_band"], d21["band_changed"]) == ("neutral", "at_risk", True)
        assert (d21["previous_score_7d"], d21["score_delta_7d"]) == (40.0, -40.0)       # day 14
        d29 = health(conn, 29)
        assert (d29["previous_score_28d"], d29["score_delta_28d"]) == (100.0, -100.0)   # day 1
        assert math.isnan(health(conn, 28)["previous_score_28d"])  # day 0 was never scored

        moves = conn.execute(band_changes_sql(SETTINGS), {**export_params(day(1), day(35)), "bands": list(BANDS),
                                                          **change_params(SETTINGS)}).df()
        assert list(zip(moves["snapshot_date"].dt.date, moves["from_band"], moves["to_band"], moves["direction"])) == [
            (day(11), "healthy", "neutral", "worse"), (day(21), "neutral", "at_risk", "worse")]
        # MID: usage_level, usage_trend and feature_depth each cost 20 points; BAD: all five do.
        # Ties go to the first name.
        assert list(moves["top_drag"]) == ["feature_depth", "breadth"]
        # What moved, since the day before: every component that lost points, the largest loss first,
        # ties in the scorecard's order; a metric gone missing scores its missing policy (zero).
        assert list(moves["what_changed"]) == [
            "usage_level 4 → 0 of 4 points (usage_28d 700 → 0); usage_trend 4 → 0 of 4 points (usage_change_pct "
            "0.5 → -0.6); feature_depth 4 → 0 of 4 points (features_adopted_28d 2 → 0)",
            "breadth 4 → 0 of 4 points (breadth_28d 0.7 → 0); concentration 4 → 0 of 4 points (top_user_share_28d "
            "0.3 → missing)"]
        assert list(moves["what_changed_7d"]) == list(moves["what_changed"])  # days 4 and 14 score as 10 and 20


def test_rescoring_part_of_the_range_reads_earlier_scores_from_the_table():
    with scoring_db() as conn:
        crafted_history(conn)
        list(score_range(conn, SETTINGS, day(1), day(35)))  # scores, audits, commits
        whole = conn.execute("SELECT * FROM core.account_health ORDER BY snapshot_date").df()
        list(score_range(conn, SETTINGS, day(21), day(21)))  # scores, audits, commits
        list(score_range(conn, SETTINGS, day(11), day(30)))  # scores, audits, commits
        again = conn.execute("SELECT * FROM core.account_health ORDER BY snapshot_date").df()
    assert whole.equals(again)


# --- the signals' rules: band overrides, the end of onboarding, the footprint cut-off ---------------

GREEN = {"first_session_activated_share": 0.6, "run_query_users_28d": 4, "group_by_users_28d": 2}
YELLOW = {**GREEN, "group_by_users_28d": 1}
# The default scorecard with the red-pulse override of default.yaml's comment, and onboarding that ends on green.
RULES = load_text(yaml.safe_dump(merge_overrides(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()), {
    "onboarding": {"ends_on_green": True},
    "band_overrides": [{"name": "red_pulse", "when": {"pulse_score": {"lt": 1}, "days_since_pulse": {"lt": 14}},
                        "band_at_most": "at_risk"}]}), sort_keys=False))


def scored_days(config: HealthConfig, plan: list[dict], since: dt.date | None = None) -> list[dict]:
    """Account T's rows of core.account_health for days 1.. of `plan` (its metrics per day)."""
    with scoring_db() as conn:
        insert_account(conn, "T", {"plan": "growth", "customer_since": since or dt.date(2024, 1, 1)},
                       [(day(n), values) for n, values in enumerate(plan, start=1)])
        list(score_range(conn, config, day(1), day(len(plan))))  # scores, audits, commits
        return conn.execute("SELECT * FROM core.account_health ORDER BY snapshot_date").df().to_dict("records")


def test_a_red_pulse_override_caps_the_band_while_it_holds():
    red = {"pulse_score": 0, "days_since_pulse": 13}
    plan = [GOOD, {**GOOD, **red}, {**GOOD, **red, "days_since_pulse": 14},
            {**GOOD, **red, "features_adopted_28d": 0}, {**BAD, **red}]
    rows = scored_days(RULES, plan)
    assert [(r["health_score"], r["health_band"], r["band_source"]) for r in rows] == [
        (100.0, "healthy", "score"),
        (87.0, "at_risk", "override"),  # 100 of 115 (sentiment 0 of 15), healthy by the score; red, 13 days old
        (87.0, "healthy", "score"),  # 14 days old: the override no longer holds
        (69.6, "at_risk", "override"),  # 80 of 115: neutral by the score, capped
        (0.0, "at_risk", "score"),  # at_risk anyway: the override changes nothing
    ]
    assert rows[1]["score_reason"].startswith("at_risk by override red_pulse; otherwise healthy 87.0/100: "
                                              "biggest drag pulse (-13.0 points; pulse_score = 0 in [0, 1))")
    assert rows[4]["score_reason"].startswith("at_risk 0.0/100")
    assert [r["health_band"] for r in scored_days(SETTINGS, plan)][:2] == ["healthy", "healthy"]  # none configured


def test_onboarding_ends_on_the_first_green_day_when_configured():
    since = day(1)
    plan = [{**GOOD, **YELLOW}, {**GOOD, **GREEN}, {**GOOD, **YELLOW}, {**GOOD, **YELLOW}]
    ended = scored_days(RULES, plan, since)
    # Day 2 is green: still onboarding that day (healthy by activation); from day 3 the score bands it.
    assert [(r["in_onboarding"], r["health_band"], r["band_source"]) for r in ended] == [
        (True, "neutral", "activation"), (True, "healthy", "activation"),
        (False, "healthy", "score"), (False, "healthy", "score")]
    fixed = scored_days(SETTINGS, plan, since)  # the default: onboarding lasts within_days whatever the colour
    assert [(r["in_onboarding"], r["health_band"]) for r in fixed] == [
        (True, "neutral"), (True, "healthy"), (True, "neutral"), (True, "neutral")]


@pytest.mark.parametrize(("contacts", "footprint"), [(0, "none"), (1, "light"), (2, "light"), (3, "broad")])
def test_the_footprint_cut_off_is_configured(contacts, footprint):
    assert digital_footprint(contacts, SIGNALS.broad_footprint_contacts) == footprint
    segment = segment_for(SIGNALS, {"plan": "growth", "digital_footprint": footprint}).name
    assert segment == ("default" if footprint == "broad" else "light_footprint")
    assert digital_footprint(4) == "light" and digital_footprint(5) == "broad"  # the default cut-off, 5


@pytest.mark.parametrize(("edit", "field", "reason"), [
    (lambda r: r.update(band_overrides=[{"name": "x", "when": {"pulse_scor": {"lt": 1}}, "band_at_most": "at_risk"}]),
     "band_overrides[0].when.pulse_scor", "unknown metric 'pulse_scor'"),
    (lambda r: r.update(band_overrides=[{"name": "x", "when": {"pulse_score": {"lt": 1}}, "band_at_most": "red"}]),
     "band_overrides[0].band_at_most", "'red' is not one of"),
    (lambda r: r.update(band_overrides=[{"name": "x", "when": {"pulse_score": {"below": 1}},
                                         "band_at_most": "at_risk"}]),
     "band_overrides[0].when.pulse_score.below", "unknown test"),
    (lambda r: r.update(band_overrides=[{"name": "x", "when": {"pulse_score": {"lt": 1}}, "band_at_most": "at_risk",
                                         "days": 14}]),
     "band_overrides[0].days", "unknown key"),
    (lambda r: r.update(signals={"pulse_days": 0}), "signals.pulse_days", "0 is not a whole number of days"),
    (lambda r: r.update(signals={"pulse_dayz": 30}), "signals.pulse_dayz", "did you mean 'pulse_days'?"),
    (lambda r: r.update(digital_footprint={"broad_from": 2.5}), "digital_footprint.broad_from",
     "2.5 is not a whole number of contacts"),
    (lambda r: r["onboarding"].update(ends_on_green="yes"), "onboarding.ends_on_green", "must be true or false"),
])
def test_bad_signal_settings_name_file_field_and_reason(tmp_path, edit, field, reason):
    path = _write_variant(tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert (err.value.field, len(err.value.problems)) == (field, 1), err.value
    assert reason in err.value.reason
