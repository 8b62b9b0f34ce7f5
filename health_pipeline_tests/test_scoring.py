"""The scorecard: bin matching, validation errors, and SQL scoring against the Python reference."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import duckdb
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from health_pipeline.config import DEFAULT_CONFIG_PATH, ConfigError, load_settings
from health_pipeline.contract import ACCOUNT_METRICS
from health_pipeline.stages.scoring import account_health_params, account_health_sql, load_scorecard, score_column

SETTINGS = load_settings()
SCORECARD = SETTINGS.scorecard


@pytest.mark.parametrize(
    ("component", "value", "points"),
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
def test_bin_matching_respects_edge_inclusivity(component, value, points):
    c = next(c for c in SCORECARD.components if c.name == component)
    assert c.bin_for(value).points == points


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
    path.write_text(yaml.safe_dump(raw))
    return path


def _bins(raw, component):
    return raw["scorecard"]["components"][component]["bins"]


@pytest.mark.parametrize(
    ("edit", "field", "reason"),
    [
        (lambda r: r["scorecard"]["components"]["usage_level"].update(metric="logins_28d"),
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
         "scorecard.components.usage_level.bins[0].points", "must not be negative"),
        (lambda r: _bins(r, "usage_level").__setitem__(0, {"range": "0..1", "points": 0}),
         "scorecard.components.usage_level.bins[0].range", "must look like"),
        (lambda r: r["scorecard"]["bands"].update(healthy=120),
         "scorecard.bands.healthy", "outside 0..100"),
        (lambda r: r["scorecard"].update(components={}),
         "scorecard.components", "non-empty mapping"),
        (lambda r: r["scorecard"]["components"]["breadth"].update(missing="skip"),
         "scorecard.components.breadth.missing", "not one of"),
        (lambda r: r["events"].update(usage=["Run Query"]),
         "events.usage[0]", "is not an event name"),
    ],
)
def test_bad_configuration_names_file_field_and_reason(tmp_path, edit, field, reason):
    path = _write_variant(tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert err.value.path == str(path)
    assert err.value.field == field
    assert reason in err.value.reason
    assert str(err.value).startswith(f"{path}: {field}: ")


def test_scorecard_version_follows_content(tmp_path):
    same = _write_variant(tmp_path, lambda r: None)
    assert load_settings(same).scorecard_version == SETTINGS.scorecard_version
    changed = _write_variant(tmp_path, lambda r: r["scorecard"]["bands"].update(healthy=75))
    assert load_settings(changed).scorecard_version != SETTINGS.scorecard_version


# --- SQL scoring agrees with the reference rule, for any metric values -------------------------

@pytest.fixture(scope="module")
def scoring_db():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA raw; CREATE SCHEMA core")
    conn.execute("CREATE TABLE raw.accounts (account_id VARCHAR, status VARCHAR)")
    conn.execute("INSERT INTO raw.accounts VALUES ('A', 'paying')")
    columns = ", ".join(f"{m} DOUBLE" for m in ACCOUNT_METRICS)
    conn.execute(f"CREATE TABLE core.account_metrics (snapshot_date DATE, account_id VARCHAR, {columns})")
    load_scorecard(conn, SCORECARD)
    yield conn
    conn.close()


def sql_score(conn, values: dict) -> dict:
    conn.execute("DELETE FROM core.account_metrics")
    names = list(ACCOUNT_METRICS)
    conn.execute(
        f"INSERT INTO core.account_metrics VALUES (DATE '2026-08-31', 'A', {', '.join('?' * len(names))})",
        [values.get(n) for n in names],
    )
    day = dt.date(2026, 8, 31)
    frame = conn.execute(account_health_sql(SCORECARD), account_health_params(SETTINGS, day, day)).df()
    return frame.iloc[0].to_dict()


def metric_values(low_overrides: dict | None = None):
    def value_for(metric):
        lo, hi = ACCOUNT_METRICS[metric]
        finite_hi = 1e6 if math.isinf(hi) else hi
        return st.one_of(st.none(), st.floats(lo, finite_hi, allow_nan=False), st.sampled_from([lo, finite_hi]))
    return st.fixed_dictionaries({m: value_for(m) for m in SCORECARD.metrics})


@settings(max_examples=300, deadline=None)
@given(values=metric_values())
def test_sql_score_matches_reference_and_stays_in_range(scoring_db, values):
    row = sql_score(scoring_db, values)
    expected, points = SCORECARD.score(values)
    assert row["health_score"] == pytest.approx(expected)
    assert 0 <= row["health_score"] <= 100
    assert row["health_band"] == SCORECARD.band(expected)
    for component, won in points.items():
        assert row[score_column(component)] == pytest.approx(won)


@settings(max_examples=200, deadline=None)
@given(values=metric_values(), data=st.data())
def test_score_never_drops_when_a_higher_is_better_metric_rises(values, data):
    component = data.draw(st.sampled_from([c for c in SCORECARD.components if c.higher_is_better]))
    lo, hi = ACCOUNT_METRICS[component.metric]
    hi = 1e6 if math.isinf(hi) else hi
    before = data.draw(st.floats(lo, hi, allow_nan=False))
    after = data.draw(st.floats(before, hi, allow_nan=False))
    low, _ = SCORECARD.score({**values, component.metric: before})
    high, _ = SCORECARD.score({**values, component.metric: after})
    assert high >= low
