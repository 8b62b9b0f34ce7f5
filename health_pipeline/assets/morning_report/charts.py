"""The morning report's charts, as Vega-Lite specs built with Altair, without their data.

A site holds each spec once (in assets/charts.js); a page holds only each chart's data, as named
datasets in a JSON script beside the chart (or, on the account pages and the owner pages' cards,
in the owner's data file), and report.js renders the two together in the browser with the Vega
bundle copied into the site. So 5,000 accounts carry 5,000 small data blocks, not 5,000 copies
of a spec.

Series over the report's 90 days are stored as change points to stay small: per series, the days
on which its value changed and the values (score_history.sql), which the spec turns back into
dated rows (`flatten`, then `calculate` from its parameter `first_day`) and draws as a step line.
So the specs depend on the scorecard, not on the day (`day_free_specs`, which the report keeps
between reports: Altair takes most of a second to build them in a fresh process), but for that
one parameter (`on_day`).
"""

from __future__ import annotations

import datetime as dt

import altair as alt

from health_pipeline.scorecard.model import BAND_COLOURS, BANDS

SERIES = "series"  # the dataset name of a chart's main data
EDGES = "edges"  # the metric charts' bin edges
BAND_SCALE = alt.Scale(domain=list(BANDS), range=[BAND_COLOURS[band] for band in BANDS])
WIDE = 560
FIRST_DAY = "first_day"  # the parameter of the dated charts: the first of the report's 90 days
DATED = ("sparkline", "account_score", "account_components")  # the charts of series over the 90 days


def _band_colour(field: str = "band") -> alt.Color:
    return alt.Color(f"{field}:N", scale=BAND_SCALE, sort=list(BANDS), title="band",
                     legend=alt.Legend(labelExpr="replace(datum.label, '_', ' ')"))


COUNT_AXIS = alt.Axis(tickMinStep=1, format="d")  # counts of accounts are whole numbers


def _dated(chart: alt.Chart) -> alt.Chart:
    """Unfold a series' change points (lists `d`, days after the parameter FIRST_DAY, and `v`, the
    values) into a row per point with its UTC `date`; drawn as a step line, they are the whole series."""
    return chart.transform_flatten(["d", "v"]).transform_calculate(date=f"{FIRST_DAY} + datum.d * 864e5")


def _date_axis(title: str | None = None) -> alt.X:
    return alt.X("date:T", title=title, scale=alt.Scale(type="utc"),
                 axis=alt.Axis(format="%b %d", labelOverlap=True))


def band_shares() -> alt.Chart:
    """Stacked area: each band's share of the scored accounts per day. Data: (snapshot_date, band, accounts)."""
    return alt.Chart(alt.NamedData(SERIES)).mark_area().encode(
        x=alt.X("snapshot_date:T", title=None, axis=alt.Axis(format="%b %d", labelOverlap=True)),
        y=alt.Y("accounts:Q", stack="normalize", title="share of accounts", axis=alt.Axis(format="%")),
        color=_band_colour(),
        order=alt.Order("band_order:Q"),
        tooltip=["snapshot_date:T", "band:N", "accounts:Q"],
    ).transform_calculate(
        band_order=f"indexof({list(BANDS)!r}, datum.band)"
    ).properties(width=WIDE, height=220)


def score_histogram() -> alt.Chart:
    """Accounts per 10-point score bin, stacked by band. Data: (health_score, band) per account."""
    return alt.Chart(alt.NamedData(SERIES)).mark_bar().encode(
        x=alt.X("health_score:Q", bin=alt.Bin(step=10, extent=[0, 100]), title="health score"),
        y=alt.Y("count():Q", title="accounts", axis=COUNT_AXIS),
        color=_band_colour(),
        tooltip=[alt.Tooltip("count():Q", title="accounts"), "band:N"],
    ).properties(width=WIDE, height=200)


def sparkline() -> alt.Chart:
    """The score over 90 days, no axes: a card's glance. Data: the score's change points (d, v)."""
    return _dated(alt.Chart(alt.NamedData(SERIES))).mark_line(
        color="#444", strokeWidth=1.5, interpolate="step-after"
    ).encode(
        x=alt.X("date:T", axis=None, scale=alt.Scale(type="utc")),
        y=alt.Y("v:Q", axis=None, scale=alt.Scale(domain=[0, 100])),
    ).properties(width=180, height=36).configure_view(stroke=None)


def account_score() -> alt.Chart:
    """The score over 90 days, with the account's band cut-offs dashed. Data: series, the score's
    change points (d, v); edges (value, label)."""
    line = _dated(alt.Chart(alt.NamedData(SERIES))).mark_line(
        point=True, interpolate="step-after"
    ).encode(
        x=_date_axis(),
        y=alt.Y("v:Q", scale=alt.Scale(domain=[0, 100]), title="health score"),
        tooltip=[alt.Tooltip("utcyearmonthdate(date):T", title="from"), alt.Tooltip("v:Q", title="score")],
    )
    cutoffs = alt.Chart(alt.NamedData(EDGES)).mark_rule(strokeDash=[4, 4], color="#777").encode(y="value:Q")
    labels = alt.Chart(alt.NamedData(EDGES)).mark_text(align="left", dx=4, dy=-6, color="#555").encode(
        y="value:Q", text="label:N", x=alt.value(0))
    return alt.layer(line, cutoffs, labels).properties(width=WIDE, height=200)


def account_components(components: tuple[str, ...]) -> alt.FacetChart:
    """Each component's points as a percentage of its possible points over 90 days, a panel per
    component. Data: a row per component (c) with its change points (d, v)."""
    return _dated(alt.Chart(alt.NamedData(SERIES))).mark_line(interpolate="step-after").encode(
        x=_date_axis(),
        y=alt.Y("v:Q", scale=alt.Scale(domain=[0, 100]), title="% of points"),
        tooltip=[alt.Tooltip("utcyearmonthdate(date):T", title="from"), alt.Tooltip("c:N", title="component"),
                 alt.Tooltip("v:Q", title="% of points")],
    ).properties(width=WIDE, height=60).facet(
        row=alt.Row("c:N", sort=list(components), title=None, header=alt.Header(labelAngle=0, labelAlign="left"))
    )


def metric_distribution(metric: str) -> alt.LayerChart:
    """Accounts per value of a metric, with the scorecard's bin edges as rules. Data: series (value);
    edges (value, label)."""
    bars = alt.Chart(alt.NamedData(SERIES)).mark_bar(color="#4c78a8").encode(
        x=alt.X("value:Q", bin=alt.Bin(maxbins=40), title=metric),
        y=alt.Y("count():Q", title="accounts", axis=COUNT_AXIS),
    )
    edges = alt.Chart(alt.NamedData(EDGES)).mark_rule(color="#d62728", strokeWidth=2).encode(
        x="value:Q", tooltip=["label:N"])
    return alt.layer(bars, edges).properties(width=WIDE, height=200)


def day_free_specs(components: tuple[str, ...], metrics: tuple[str, ...]) -> dict[str, dict]:
    """Every spec a site uses, by name (what a page's chart names in its data-chart attribute),
    without the dated charts' first day (`on_day` sets it)."""
    specs = {
        "band_shares": band_shares(),
        "score_histogram": score_histogram(),
        "sparkline": sparkline(),
        "account_score": account_score(),
        "account_components": account_components(components),
        **{f"metric:{metric}": metric_distribution(metric) for metric in metrics},
    }
    # Validating the specs against the Vega-Lite schema takes most of a second a build; tests do it.
    return {name: chart.to_dict(validate=False) for name, chart in specs.items()}


def on_day(specs: dict[str, dict], first_day: dt.date) -> dict[str, dict]:
    """`specs` (day_free_specs) with the dated charts' parameter FIRST_DAY set to `first_day`, UTC."""
    first = {"name": FIRST_DAY, "expr": f"utc({first_day.year}, {first_day.month - 1}, {first_day.day})"}
    return {name: {**spec, "params": [first]} if name in DATED else spec for name, spec in specs.items()}


def chart_specs(first_day: dt.date, components: tuple[str, ...], metrics: tuple[str, ...]) -> dict[str, dict]:
    """Every spec of the site whose 90 days start on `first_day`."""
    return on_day(day_free_specs(components, metrics), first_day)
