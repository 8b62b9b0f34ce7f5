"""Strict configuration: the scorecard file against its schema (unknown and repeated keys, numbers
out of bounds), every problem reported at once, and every HEALTH_* setting parsed when the
definitions load, by `health-pipeline check`, `health-pipeline run` and `dg check defs`: one line
per problem, before anything is written."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from health_pipeline import PROJECT_ROOT
from health_pipeline.definitions import build_defs
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.scorecard.parser import ConfigError, load_config
from health_pipeline.settings import DEFAULT_CONFIG_PATH

BIN = Path(sys.executable).parent
DEFAULT_TEXT = DEFAULT_CONFIG_PATH.read_text()
# Parsed once: the bounds tests edit a copy hundreds of times, and parsing is most of an edit's cost.
DEFAULT_RAW = yaml.safe_load(DEFAULT_TEXT)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's writes the same text, five times faster
EMAIL = {"host": "smtp.example.test", "from": "health@example.test", "default_to": "cs@example.test"}


def default_raw() -> dict:
    """The shipped scorecard, with an alerts block whose every setting is given."""
    raw = copy.deepcopy(DEFAULT_RAW)
    raw["alerts"] = {"score_drop_points": 15, "power_contact_quiet_days": 14, "timeout_seconds": 10,
                     "min_days_in_new_band": 1, "email": {**EMAIL, "port": 25}}
    return raw


def refusals(path: Path) -> list[str]:
    """The lines of the ConfigError that loading `path` raises."""
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return str(err.value).splitlines()


def write(folder: Path, raw: dict) -> Path:
    path = folder / "scorecard.yaml"
    path.write_text(yaml.dump(raw, Dumper=DUMPER, sort_keys=False))
    return path


def edited(edit) -> dict:
    raw = default_raw()
    edit(raw)
    return raw


def component(raw: dict, name: str) -> dict:
    return raw["scorecard"]["components"][name]


# --- unknown keys ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("edit", "field", "reason"), [
    (lambda r: component(r, "usage_level").update(misssing="neutral"),
     "scorecard.components.usage_level.misssing", "unknown key; did you mean 'missing'?"),
    (lambda r: component(r, "breadth")["bins"][0].update(point=1),
     "scorecard.components.breadth.bins[0].point", "unknown key; did you mean 'points'?"),
    (lambda r: r["scorecard"]["bands"].update(healty=80),
     "scorecard.bands.healty", "unknown key; did you mean 'healthy'?"),
    (lambda r: r["scorecard"].update(group={"usage": 1}),
     "scorecard.group", "unknown key; did you mean 'groups'?"),
    (lambda r: r["segments"][0].update(overides={"bands": {"healthy": 80}}),
     "segments[0].overides", "unknown key; did you mean 'overrides'?"),
    (lambda r: r["segments"][0]["overrides"].update(band={"healthy": 80}),
     "segments[0].overrides.band", "unknown key; did you mean 'bands'?"),
    (lambda r: r["segments"][0]["overrides"]["components"]["power_contacts"].update(higher_is_beter=False),
     "segments[0].overrides.components.power_contacts.higher_is_beter",
     "unknown key; did you mean 'higher_is_better'?"),
    (lambda r: r["segments"][0].update(when={"plans": {"in": ["enterprise"]}}),
     "segments[0].when.plans", "unknown account attribute; did you mean 'plan'?"),
    (lambda r: r["alerts"].update(timeout=30),
     "alerts.timeout", "unknown key; did you mean 'timeout_seconds'?"),
    (lambda r: r["alerts"]["email"].update(start_tls=True),
     "alerts.email.start_tls", "unknown key; did you mean 'starttls'?"),
    (lambda r: r["onboarding"].update(first_session_events="run_query"),
     "onboarding.first_session_events", "unknown key; did you mean 'first_session_event'?"),
    (lambda r: r["onboarding"]["measures"]["query_users"].update(gren=5),
     "onboarding.measures.query_users.gren", "unknown key; did you mean 'green'?"),
    (lambda r: r["events"].update(feature=["group_by"]),
     "events.feature", "unknown key; did you mean 'features'?"),
    (lambda r: r.update(segment=[]), "segment", "unknown key; did you mean 'segments'?"),
    (lambda r: r.update(alert={"timeout_seconds": 5}), "alert", "unknown key; did you mean 'alerts'?"),
    (lambda r: r.update(colour="red"), "colour", "unknown key; known: events, exclude_identities, power_roles, "
                                                 "signals, onboarding, scorecard, digital_footprint, segments, "
                                                 "band_overrides, alerts"),
])
def test_an_unknown_key_is_refused_with_the_nearest_known_one(tmp_path, edit, field, reason):
    path = write(tmp_path, edited(edit))
    assert refusals(path) == [f"{path}: {field}: {reason}"]


# --- repeated keys --------------------------------------------------------------------------------

def test_a_repeated_key_is_refused_naming_the_key_and_both_lines(tmp_path):
    text = (DEFAULT_TEXT.replace("    adoption: 40\n", "    adoption: 40\n    adoption: 10\n", 1)
            .replace("  - name: light_footprint\n", "  - name: light_footprint\n    name: small\n", 1))
    path = tmp_path / "scorecard.yaml"
    path.write_text(text)
    lines = text.splitlines()
    adoption = [i + 1 for i, line in enumerate(lines) if line.startswith("    adoption: ")]
    name = [i + 1 for i, line in enumerate(lines) if line.strip().startswith(("- name: light_footprint",
                                                                              "name: small"))]
    assert len(adoption) == 2 and len(name) == 2
    assert refusals(path) == [
        f"{path}: scorecard.groups.adoption: repeated on line {adoption[1]} (first on line {adoption[0]}); keep one",
        f"{path}: segments[1].name: repeated on line {name[1]} (first on line {name[0]}); keep one",
    ]


def test_a_key_merged_in_from_an_anchor_may_be_overridden(tmp_path):
    text = DEFAULT_TEXT.replace("  bands:\n    healthy: 70\n    neutral: 40\n",
                                "  bands: &bands\n    healthy: 70\n    neutral: 40\n", 1)
    text = text.replace("        concentration: null\n",
                        "        concentration: null\n      bands:\n        <<: *bands\n        healthy: 75\n", 1)
    path = tmp_path / "scorecard.yaml"
    path.write_text(text)
    assert load_config(path).segments[1].scorecard.healthy_from == 75  # YAML's merge key is no repeat


# --- numbers: finite and within bounds ------------------------------------------------------------

def _at(raw: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        raw = raw[key]
    raw[path[-1]] = value


# Every numeric field family, one field each, with its bounds as the schema documents them:
# (where, its field path, low, high, whole number, low excluded, what a refusal says it must be).
NUMERIC_FIELDS = [
    (("scorecard", "components", "usage_level", "bins", 2, "points"),
     "scorecard.components.usage_level.bins[2].points", 0, 1000, False, False, "a number from 0 to 1000"),
    (("scorecard", "groups", "adoption"), "scorecard.groups.adoption", 0, 1000, False, False,
     "a number from 0 to 1000"),
    (("segments", 0, "overrides", "groups", "relationship"), "segments[0].overrides.groups.relationship",
     0, 1000, False, False, "a number from 0 to 1000"),
    (("scorecard", "bands", "neutral"), "scorecard.bands.neutral", 0, 100, False, False, "a number from 0 to 100"),
    (("onboarding", "measures", "query_users", "yellow"), "onboarding.measures.query_users.yellow",
     0, math.inf, False, False, "a finite number, 0 or more"),
    (("onboarding", "measures", "saved_report_in_first_session", "green"),
     "onboarding.measures.saved_report_in_first_session.green", 0, 1, False, False, "a finite number from 0 to 1"),
    (("onboarding", "within_days"), "onboarding.within_days", 0, 3650, True, False,
     "a whole number of days from 0 to 3650"),
    (("alerts", "score_drop_points"), "alerts.score_drop_points", 0, 100, False, True,
     "a number of points above 0 and at most 100"),
    (("alerts", "power_contact_quiet_days"), "alerts.power_contact_quiet_days", 1, 3650, True, False,
     "a whole number of days from 1 to 3650"),
    (("alerts", "min_days_in_new_band"), "alerts.min_days_in_new_band", 1, 3650, True, False,
     "a whole number of days from 1 to 3650"),
    (("alerts", "timeout_seconds"), "alerts.timeout_seconds", 0, 600, False, True,
     "a number of seconds above 0 and at most 600"),
    (("alerts", "email", "port"), "alerts.email.port", 1, 65535, True, False, "a port number from 1 to 65535"),
    (("segments", 0, "when", "arr"), "segments[0].when.arr.gte", -math.inf, math.inf, False, False,
     "a finite number"),
]


def refused(low: float, high: float, whole: bool, above: bool) -> st.SearchStrategy:
    """Values outside [low, high] (or (low, high]), non-finite ones, the wrong kind of number, and
    huge ones."""
    outside = [st.sampled_from([math.nan, math.inf, -math.inf]), st.booleans()]
    if low > -math.inf:
        outside += [st.floats(max_value=low, allow_nan=False).filter(lambda v: v <= low if above else v < low),
                    st.integers(max_value=math.floor(low) - (0 if above else 1))]
    if high < math.inf:
        outside += [st.floats(min_value=high, exclude_min=True, allow_nan=False),
                    st.integers(min_value=math.floor(high) + 1), st.integers(min_value=10**300)]
    if whole:
        outside.append(st.floats(min_value=low, max_value=high))  # 30.0 is no whole number of days
    return st.one_of(outside)


@pytest.mark.parametrize(("where", "field", "low", "high", "whole", "above", "what"), NUMERIC_FIELDS,
                         ids=[field for _, field, *_ in NUMERIC_FIELDS])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_number_out_of_bounds_is_refused_naming_its_field(tmp_path, where, field, low, high, whole, above, what,
                                                            data):
    value = data.draw(refused(low, high, whole, above))
    raw = default_raw()
    _at(raw, where, {"gte": value} if field.endswith(".gte") else value)
    path = write(tmp_path, raw)
    assert refusals(path) == [f"{path}: {field}: {value!r} is not {what}"]


def test_a_bin_edge_that_is_not_a_number_is_refused(tmp_path):
    path = write(tmp_path, edited(lambda r: component(r, "breadth")["bins"][1].update(range="[0.1, nan)")))
    assert refusals(path) == [f"{path}: scorecard.components.breadth.bins[1].range: edges '0.1', 'nan' are not "
                              "numbers, inf or -inf"]


@pytest.mark.parametrize(("where", "value"), [
    (("scorecard", "components", "usage_level", "bins", 4, "points"), 1000),
    (("scorecard", "groups", "adoption"), 0),
    (("onboarding", "within_days"), 3650),
    (("alerts", "timeout_seconds"), 600),
    (("alerts", "score_drop_points"), 100),
    (("alerts", "power_contact_quiet_days"), 3650),
    (("alerts", "email", "port"), 65535),
])
def test_the_bounds_themselves_are_accepted(tmp_path, where, value):
    raw = default_raw()
    _at(raw, where, value)
    load_config(write(tmp_path, raw))


def test_a_missing_number_is_required_with_its_bounds(tmp_path):
    path = write(tmp_path, edited(lambda r: r["scorecard"]["bands"].pop("neutral")))
    assert refusals(path) == [f"{path}: scorecard.bands.neutral: is required: a number from 0 to 100"]


# --- every problem at once ------------------------------------------------------------------------

def test_every_problem_in_a_file_is_reported_together_in_file_order(tmp_path):
    def mistakes(raw):
        raw["power_role"] = raw.pop("power_roles")
        raw["onboarding"]["within_days"] = math.nan
        component(raw, "usage_level")["misssing"] = "neutral"
        component(raw, "breadth")["bins"][1]["range"] = "[0.2, 0.25)"
        raw["scorecard"]["groups"]["depth"] = 1e308
        raw["segments"][1]["when"]["digital_footprint"] = {"between": ["none"]}
        raw["alerts"]["timeout_seconds"] = math.inf

    path = write(tmp_path, edited(mistakes))
    assert refusals(path) == [f"{path}: {line}" for line in [
        "power_role: unknown key; did you mean 'power_roles'?",
        "onboarding.within_days: nan is not a whole number of days from 0 to 3650",
        "scorecard.groups.depth: 1e+308 is not a number from 0 to 1000",
        "scorecard.components.usage_level.misssing: unknown key; did you mean 'missing'?",
        "scorecard.components.breadth.bins[1]: gap between [0, 0.1) and [0.2, 0.25)",
        "segments[1].when.digital_footprint.between: unknown test; known: in, not_in, gte, gt, lte, lt",
        "alerts.timeout_seconds: inf is not a number of seconds above 0 and at most 600",
    ]]


def test_a_segment_is_checked_only_against_a_sound_base(tmp_path):
    """A mistake in the base scorecard is one line, not one more per segment that merges it."""
    path = write(tmp_path, edited(lambda r: component(r, "feature_depth")["bins"][2].update(points=math.nan)))
    assert refusals(path) == [f"{path}: scorecard.components.feature_depth.bins[2].points: nan is not a number "
                              "from 0 to 1000"]


# --- HEALTH_* settings ----------------------------------------------------------------------------

BAD_SETTINGS = [
    ("HEALTH_REPORT_DAYS", "abc", "HEALTH_REPORT_DAYS='abc' is not a whole number of days from 0 to 3650"),
    ("HEALTH_LATE_DAYS", "1000000000000", "HEALTH_LATE_DAYS='1000000000000' is not a whole number of days from 0 "
                                          "to 3650"),
    ("HEALTH_PARTITIONS_START", "2026-02-30", "HEALTH_PARTITIONS_START='2026-02-30' is not a YYYY-MM-DD date"),
    ("HEALTH_FUTURE_TOLERANCE_HOURS", "-3", "HEALTH_FUTURE_TOLERANCE_HOURS='-3' is not a whole number of hours "
                                            "from 0 to 87600"),
    ("HEALTH_FUTURE_TOLERANCE_HOURS", "1.5", "HEALTH_FUTURE_TOLERANCE_HOURS='1.5' is not a whole number of hours "
                                             "from 0 to 87600"),
    ("HEALTH_KNOWN_GAPS", "2026-07-04,2026-02-30", "HEALTH_KNOWN_GAPS: '2026-02-30' is not a YYYY-MM-DD date"),
    ("HEALTH_SNAPSHOT_MAX_DROP", "nan", "HEALTH_SNAPSHOT_MAX_DROP='nan' is not a share from 0 to 1"),
    ("HEALTH_BACKTEST_LEAD_DAYS", "30,0", "HEALTH_BACKTEST_LEAD_DAYS='30,0' is not a comma-separated list of lead "
                                          "times, each a whole number of days from 1 to 3650, such as 30,60,90"),
    ("HEALTH_DUCKDB_THREADS", "0", "HEALTH_DUCKDB_THREADS='0' is not a whole number of threads from 1 to 1024"),
    ("HEALTH_WAREHOUSE", "what?.duckdb", "HEALTH_WAREHOUSE='what?.duckdb': DuckDB reads '?' in a path as the start "
                                         "of connection options; choose a path without it"),
    ("HEALTH_REPORT_BASE_URL", "reports.example.com/health",
     "HEALTH_REPORT_BASE_URL is not a URL of the form https://host/path: it has no scheme: it must start with "
     "https:// or http://"),
    ("HEALTH_REPORT_BASE_URL", "file:///srv/report", "HEALTH_REPORT_BASE_URL is not a URL of the form "
                                                     "https://host/path: its scheme is not https:// or http://"),
    ("HEALTH_CRM_URL_TEMPLATE", "https://acme.my.salesforce.com/",
     "HEALTH_CRM_URL_TEMPLATE must hold {crm_account_id} once, where the account's CRM id goes, such as "
     "https://acme.my.salesforce.com/{crm_account_id}"),
    ("HEALTH_CRM_URL_TEMPLATE", "acme.my.salesforce.com/{crm_account_id}",
     "HEALTH_CRM_URL_TEMPLATE is not a URL of the form https://host/path/{crm_account_id}: it has no scheme: it "
     "must start with https:// or http://"),
    ("HEALTH_REPORT_CURRENCY", "usd", "HEALTH_REPORT_CURRENCY='usd' is not a currency code of three capital "
                                      "letters, such as USD, EUR or GBP"),
    ("HEALTH_REPORT_PERSONAL_DATA", "no", "HEALTH_REPORT_PERSONAL_DATA='no' is not one of show, hide"),
    ("HEALTH_ENGINE", "flink", "HEALTH_ENGINE='flink' is not an engine; use one of duckdb, spark"),
    # The URL may carry a token: described, never quoted.
    ("HEALTH_SPARK_REMOTE", "https://me:s3cret@cluster:443",
     "HEALTH_SPARK_REMOTE is not a URL of the form sc://host:port (a Spark Connect server; Databricks Connect's URL "
     "takes the same form): its scheme is not sc://"),
]


@pytest.mark.parametrize(("variable", "value", "line"), BAD_SETTINGS, ids=[f"{v}={x}" for v, x, _ in BAD_SETTINGS])
def test_a_bad_setting_stops_the_definitions_load_as_one_line(monkeypatch, variable, value, line):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as err:
        build_defs()
    assert str(err.value).splitlines() == [line]


def test_a_path_of_the_wrong_kind_is_refused_when_the_definitions_load(monkeypatch, tmp_path):
    (tmp_path / "raw").write_text("not a folder")
    monkeypatch.setenv("HEALTH_RAW_DIR", str(tmp_path / "raw"))
    monkeypatch.setenv("HEALTH_EXPORT_DIR", str(tmp_path / "raw"))
    monkeypatch.setenv("HEALTH_WAREHOUSE", str(tmp_path))
    with pytest.raises(ValueError) as err:
        build_defs()
    assert str(err.value).splitlines() == [
        f"HEALTH_RAW_DIR={str(tmp_path / 'raw')!r} is a file; it must name the folder of raw exports",
        f"HEALTH_WAREHOUSE={str(tmp_path)!r} is a directory; it must name the DuckDB file",
        f"HEALTH_EXPORT_DIR={str(tmp_path / 'raw')!r} is a file; it must name the folder of exports",
    ]


def test_the_largest_sensible_settings_are_accepted(monkeypatch):
    for variable, value in [("HEALTH_LATE_DAYS", "3650"), ("HEALTH_REPORT_DAYS", "0"),
                            ("HEALTH_FUTURE_TOLERANCE_HOURS", "0"), ("HEALTH_SNAPSHOT_MAX_DROP", "1"),
                            ("HEALTH_BACKTEST_LEAD_DAYS", "1, 3650"), ("HEALTH_DUCKDB_THREADS", "1024")]:
        monkeypatch.setenv(variable, value)
    build_defs()


# Every setting wrong at once, and a scorecard with a NaN group weight: one line each, in this order.
EVERY_BAD_SETTING = {
    "HEALTH_PARTITIONS_START": "2026-02-30", "HEALTH_LATE_DAYS": "-1", "HEALTH_REPORT_DAYS": "abc",
    "HEALTH_BACKTEST_LEAD_DAYS": "sixty", "HEALTH_FUTURE_TOLERANCE_HOURS": "-3",
    "HEALTH_KNOWN_GAPS": "July 5", "HEALTH_SNAPSHOT_MAX_DROP": "50%", "HEALTH_DUCKDB_THREADS": "many",
}
EVERY_BAD_LINE = [
    "HEALTH_PARTITIONS_START='2026-02-30' is not a YYYY-MM-DD date",
    "HEALTH_LATE_DAYS='-1' is not a whole number of days from 0 to 3650",
    "HEALTH_REPORT_DAYS='abc' is not a whole number of days from 0 to 3650",
    "HEALTH_BACKTEST_LEAD_DAYS='sixty' is not a comma-separated list of lead times, each a whole number of days "
    "from 1 to 3650, such as 30,60,90",
    "HEALTH_FUTURE_TOLERANCE_HOURS='-3' is not a whole number of hours from 0 to 87600",
    "HEALTH_KNOWN_GAPS: 'July 5' is not a YYYY-MM-DD date",
    "HEALTH_SNAPSHOT_MAX_DROP='50%' is not a share from 0 to 1",
    "HEALTH_DUCKDB_THREADS='many' is not a whole number of threads from 1 to 1024",
]


def bad_environment(root: Path) -> tuple[dict, list[str]]:
    """Every setting wrong and a scorecard with a NaN weight, for a command in `root`; the lines expected."""
    scorecard = write(root, edited(lambda r: r["scorecard"]["groups"].update(usage=math.nan)))
    env = {**os.environ, **EVERY_BAD_SETTING, "HEALTH_CONFIG": str(scorecard), "HEALTH_RAW_DIR": str(root / "raw"),
           "HEALTH_WAREHOUSE": str(root / "warehouse.duckdb"), "HEALTH_EXPORT_DIR": str(root / "exports"),
           "DAGSTER_HOME": str(root / "dagster_home")}
    return env, [*EVERY_BAD_LINE, f"{scorecard}: scorecard.groups.usage: nan is not a number from 0 to 1000"]


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "health-pipeline"), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_health_pipeline_check_lists_every_problem_one_line_each(tmp_path):
    env, lines = bad_environment(tmp_path)
    result = cli(env, "check")
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (2, "", lines)


@pytest.mark.slow
def test_health_pipeline_check_says_what_it_checked(tmp_path):
    result = cli({**os.environ, "HEALTH_RAW_DIR": str(tmp_path / "raw"), "HEALTH_WAREHOUSE": str(tmp_path / "w.duckdb"),
                  "HEALTH_EXPORT_DIR": str(tmp_path / "out"), "HEALTH_LATE_DAYS": "3"}, "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"settings: raw data {tmp_path / 'raw'}, warehouse {tmp_path / 'w.duckdb'}, exports {tmp_path / 'out'}; "
        "first daily partition 2026-06-01; late days 3, report days 1, "
        "backtest lead days 30, 60, 90; PostgreSQL sync off",
        f"scorecard {DEFAULT_CONFIG_PATH}: 3 tracked events; segments enterprise, light_footprint, default; "
        "7 components; 3 onboarding measures; alerts to no sink",
        "no problems found",
    ]


@pytest.mark.slow
def test_health_pipeline_run_refuses_bad_settings_before_writing_anything(tmp_path):
    generate_sample(tmp_path / "raw", SampleSpec(accounts=4, days=3, seed=5))
    env, lines = bad_environment(tmp_path)
    result = cli(env, "run")
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (2, "", lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "scorecard.yaml"]  # no warehouse, no exports


@pytest.mark.slow
def test_dg_check_defs_fails_with_the_same_lines(tmp_path):
    env, lines = bad_environment(tmp_path)
    result = subprocess.run([str(BIN / "dg"), "check", "defs"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode != 0
    output = (result.stdout + result.stderr).splitlines()
    first = output.index(f"health_pipeline.settings.SettingsError: {lines[0]}")
    assert output[first + 1:first + len(lines)] == lines[1:]
