"""Build one snapshot date's morning report: a static site under `<export dir>/report/<date>/`.

The site reads only published tables (export.account_health, export.contact_usage,
export.band_changes and the backtest), so it shows exactly what the CS tools import. The
portfolio, owner and metric pages are Jinja2 templates with autoescaping on, so every name and
value from the data is text, and chart data enters pages through `tojson`, which escapes `<`, `>`
and `&`. The account pages and the owner pages' cards, thousands at scale, are drawn in the
browser by report.js from one data file per owner (`data/<owner page>.js`), which writes every
value as text; an account page is one page under every account's name (_write_account_pages).
The site is self-contained: its stylesheet, scripts and the Vega bundle (from vl-convert, no
download) sit in `assets/`, and every link is relative, so `index.html` opens from disk.

It is written under the export dir's staging folder (export_files.py), which a later run clears
if this one dies, then renamed into place, and `report/latest` is a symlink to the newest date's
folder, so a reader never sees half a site. A copy of a site found at `report/latest` instead of
the link is replaced; anything else there stops the run (ReportFolderError) and is left as it is.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import jinja2

from health_pipeline import settings
from health_pipeline.assets import change_params
from health_pipeline.contract import activation_column, explanation_column
from health_pipeline.export_files import discard, remove_orphaned_staging, staging_dir
from health_pipeline.scorecard.model import BAND_COLOURS, BANDS, HealthConfig
from health_pipeline.sql import CompiledTemplates, SqlFolder, keep, read_kept, table_exists

from . import charts
from .forecast import BOOTSTRAP_SAMPLES, HORIZON_DAYS, MIN_OUTCOMES, WINDOWS, forecast, renewals_within

SQL = SqlFolder(__file__)
HERE = Path(__file__).resolve().parent
REPORT_DIR = "report"  # under the export dir
LATEST = "latest"
HISTORY_DAYS = 90  # the days each chart shows, ending on the report's date
DROPS_SHOWN = 10  # an owner page's biggest 7-day drops
BREAKDOWNS = ("segment", "vertical", "plan", "owner")
NO_OWNER = "(no owner)"
# A key kept as its page's file name is safe on every common file system: a conservative character
# set, at most 64 characters, and no name Windows keeps for a device (whatever the case and extension).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DEVICE_NAME = re.compile(r"CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9]", re.IGNORECASE)
# Every file a site holds, by its path in the site: a copy of a site is recognised by these alone.
_SITE_FILE = re.compile(r"index\.html|assets/(vega|charts|report)\.js|assets/report\.css|data/[^/]+\.js|"
                        r"(owners|accounts|metrics)/[^/]+\.html")


class ReportFolderError(RuntimeError):
    """Something of the user's stands where the report must write: the message says what and what to do."""


@dataclass(frozen=True)
class Site:
    """A built report: its folder, its page count, its size on disk in bytes and its build time."""

    report_date: dt.date
    folder: Path
    pages: int
    size_bytes: int
    seconds: float

    @property
    def index(self) -> Path:
        return self.folder / "index.html"


def report_root(export_dir: Path) -> Path:
    return Path(export_dir) / REPORT_DIR


def page_names(keys: Iterable) -> dict:
    """The file name (without .html) of the page of each of a site's account ids, owners or metrics,
    distinct from every other even where file names ignore case: the key itself when it is safe as a
    file name and no other key differs from it only in case, else a slug of it and its full sha256,
    more than 64 characters, so never a kept key."""
    keys = list(dict.fromkeys(keys))
    spellings = Counter(str(key).lower() for key in keys if key is not None)

    def name(key) -> str:
        text = "" if key is None else str(key)
        if key is not None and _SAFE_NAME.fullmatch(text) and not _DEVICE_NAME.fullmatch(text) \
                and spellings[text.lower()] == 1:
            return text
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:40] or "x"
        # The key's JSON, so that no owner (None) and an owner named "" or "None" differ too.
        return f"{slug}-{hashlib.sha256(json.dumps(key).encode()).hexdigest()}"

    return {key: name(key) for key in keys}


def report_server(root: Path, port: int) -> ThreadingHTTPServer:
    """An HTTP server of the report folder `root` (every date's site and `latest`) on 127.0.0.1
    only, for a quick look from this machine; `serve_forever` runs it. Port 0 picks a free one."""

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format, *args):  # noqa: A002 (http.server's name): quiet, the CLI says where it is
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def page_url(base_url: str, report_date: dt.date, folder: str | None = None, name: str | None = None) -> str | None:
    """Where a page of the site of `report_date` is served from `base_url` (HEALTH_REPORT_BASE_URL,
    the report folder's address): the portfolio, or the page `name` in `folder`; None without a name."""
    if folder is None:
        return f"{base_url}/{report_date.isoformat()}/index.html"
    return f"{base_url}/{report_date.isoformat()}/{folder}/{name}.html" if name else None


def at_risk_by_health(accounts: Iterable[dict]) -> list[dict]:
    """The accounts at risk by their health score: established accounts (band_source 'score') in
    band at_risk, in the order given. An onboarding account banded at_risk by its activation is
    never one of them (see activation_red)."""
    return [a for a in accounts if a["band_source"] == "score" and a["health_band"] == "at_risk"]


def activation_red(accounts: Iterable[dict]) -> list[dict]:
    """The onboarding accounts whose activation is red, in the order given: a list and a figure of
    their own, never counted as at risk by health."""
    return [a for a in accounts if a["in_onboarding"] and a["activation_status"] == "red"]


def arr_of(accounts: Iterable[dict]) -> float:
    return sum(a["arr"] or 0 for a in accounts)


def report_accounts(conn: duckdb.DuckDBPyConnection, config: HealthConfig, report_date: dt.date) -> list[dict]:
    """Every account in the sync table on `report_date`, in the one "most at risk" ranking, with
    what changed since the day before and since 7 days before."""
    return _rows(conn, "report_accounts", {"report_date": report_date, "bands": list(BANDS), **change_params(config)},
                 config=config)


def build_report(conn: duckdb.DuckDBPyConnection, config: HealthConfig, report_date: dt.date,
                 export_dir: Path) -> Site | None:
    """Build the site for `report_date` from the published tables; None when no account was scored that day."""
    started = time.perf_counter()
    data = _ReportData.read(conn, config, report_date)
    if not data.accounts:
        return None
    remove_orphaned_staging(export_dir)
    staged = staging_dir(export_dir)
    # The accounts' contacts and score history are half the queries' time, and only the data files
    # need them: DuckDB makes them on the connection, which nothing else uses meanwhile, while this
    # thread renders the pages.
    with ThreadPoolExecutor(max_workers=1) as duckdb_thread:
        account_json = duckdb_thread.submit(_AccountJson.read, conn, config, report_date, data.first_day)
        try:
            bundle = _vega_bundle(report_root(export_dir))
            pages = _write_site(staged / REPORT_DIR / report_date.isoformat(), data, config, bundle, account_json)
            folder = _publish(staged, report_root(export_dir), report_date)
        finally:
            discard(staged)
    return Site(report_date, folder, pages, _size_on_disk(folder), time.perf_counter() - started)


def _size_on_disk(folder: Path) -> int:
    """The bytes of the files under `folder`, each file once (by inode: the account pages are one
    file under many names). os.walk, as Path.rglob took 0.3 s for a site of 4,000 files."""
    sizes = {}
    for parent, _, files in os.walk(folder):
        for name in files:
            stat = os.stat(os.path.join(parent, name))
            sizes[stat.st_ino] = stat.st_size
    return sum(sizes.values())


# -- the data ---------------------------------------------------------------------------------------

@dataclass
class _ReportData:
    report_date: dt.date
    first_day: dt.date
    accounts: list[dict]
    band_totals: dict[int, dict[str, dict]]  # days ago -> band -> {accounts, arr}
    band_shares: list[dict]
    breakdowns: dict[str, list[dict]]
    band_changes: dict[str, list[dict]]
    bin_counts: dict[tuple[str, str], dict[str | None, int]]  # (component, segment) -> bin -> accounts
    backtest: list[dict]

    @classmethod
    def read(cls, conn: duckdb.DuckDBPyConnection, config: HealthConfig, report_date: dt.date) -> _ReportData:
        first_day = report_date - dt.timedelta(days=HISTORY_DAYS - 1)
        day = {"report_date": report_date}
        bands = {"bands": list(BANDS)}
        totals: dict[int, dict[str, dict]] = defaultdict(dict)
        for row in _rows(conn, "band_totals", {**day, **bands}):
            totals[row["days_ago"]][row["band"]] = row
        breakdowns: dict[str, list[dict]] = defaultdict(list)
        for row in _rows(conn, "breakdowns", day):
            breakdowns[row["dimension"]].append(row)
        bins: dict[tuple[str, str], dict] = defaultdict(dict)
        components = {f"component_{i}": c for i, c in enumerate(config.components)}
        for row in _rows(conn, "bin_counts", {**day, **components}, components=config.components):
            bins[row["component"], row["segment"]][row["bin"]] = row["accounts"]
        backtest = []
        if table_exists(conn, "export.backtest_summary") and table_exists(conn, "export.backtest_bands"):
            backtest = _rows(conn, "backtest_headline", {"scoring_version": config.scoring_version, **bands})
        return cls(
            report_date=report_date,
            first_day=first_day,
            accounts=report_accounts(conn, config, report_date),
            band_totals=dict(totals),
            band_shares=_rows(conn, "band_shares", {**day, **bands, "first_day": first_day}),
            breakdowns=dict(breakdowns),
            band_changes=_grouped(_rows(conn, "band_change_history", day)),
            bin_counts=dict(bins),
            backtest=backtest,
        )


def _rows(conn: duckdb.DuckDBPyConnection, name: str, params: dict, **context) -> list[dict]:
    cursor = SQL.run(conn, name, params, **context)
    columns = [column[0] for column in cursor.description]
    return [dict(zip(columns, row)) for row in cursor.fetchall()]


@dataclass
class _AccountJson:
    """Each account's contacts and score history as the JSON its data file holds, made by DuckDB:
    they are most of the values a site reads (144,000 contacts and 31,000 series at scale M), and
    need never be Python objects."""

    history: dict[str, str]  # account -> its series' change points (score_history.sql)
    contacts: dict[str, str]  # account -> its contacts, a list per column (account_contacts.sql)

    @classmethod
    def read(cls, conn: duckdb.DuckDBPyConnection, config: HealthConfig, report_date: dt.date,
             first_day: dt.date) -> _AccountJson:
        def by_account(name: str, params: dict, **context) -> dict[str, str]:
            return dict(SQL.run(conn, name, {"report_date": report_date, **params}, **context).fetchall())

        return cls(
            history=by_account("score_history", {"first_day": first_day}, components=config.components),
            contacts=by_account("account_contacts", {"power_roles": list(config.power_roles),
                                                     "personal_data": settings.report_personal_data()}),
        )


def _grouped(rows: list[dict], key: str = "account_id") -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[row[key]].append(row)
    return dict(grouped)


# -- the pages -----------------------------------------------------------------------------------

def _json_default(value):
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot put {type(value).__name__} in chart data")


def _finite(value):
    """None for NaN and infinities, which JSON cannot carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Style:
    """How a site writes ARR: in the currency of HEALTH_REPORT_CURRENCY. (Whether contacts show by
    email and name, HEALTH_REPORT_PERSONAL_DATA, is decided where they are read: account_contacts.sql.)"""

    currency: str = settings.DEFAULT_REPORT_CURRENCY

    @classmethod
    def from_settings(cls) -> Style:
        return cls(settings.report_currency())

    @property
    def symbol(self) -> str:
        return settings.CURRENCY_SYMBOLS.get(self.currency, f"{self.currency} ")

    def money(self, value, signed: bool = False) -> str:
        if value is None:
            return "–"
        sign = ("+" if value >= 0 else "−") if signed else ("−" if value < 0 else "")
        return f"{sign}{self.symbol}{abs(value):,.0f}"


@functools.cache
def _templates(style: Style) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        bytecode_cache=CompiledTemplates(),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "default": _json_default, "allow_nan": False}
    env.filters.update(
        band=lambda band: "no band" if band is None else band.replace("_", " "),
        number=_number,
        value=_value,
        percent=lambda share, digits=0: "–" if share is None else f"{100 * share:.{digits}f}%",
        signed=lambda value: "–" if value is None else f"{value:+.1f}",
        money=style.money,
        signed_money=lambda value: style.money(value, signed=True),
        renewal=_renewal,
        owner_name=lambda owner: NO_OWNER if owner is None else owner,
        # what_changed: null when the earlier day was not scored, empty when nothing it covers moved
        changed=lambda what: "not scored then" if what is None else what or "nothing",
        finite=_finite,
    )
    env.globals.update(bands=BANDS, band_colours=BAND_COLOURS, explanation_column=explanation_column,
                       activation_column=activation_column)
    return env


def _renewal(days) -> str:
    """Days to renewal in words: in N days, today, N days ago; '–' when unknown."""
    if days is None:
        return "–"
    if days == 0:
        return "today"
    return f"in {days:,} day{'' if days == 1 else 's'}" if days > 0 else f"{-days:,} day{'' if days == -1 else 's'} ago"


def _value(value) -> str:
    """A metric's value or points as the scorecard writes it (as in score_reason): a whole number
    without decimals, else at most three; '–' when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{round(float(value), 3):,.3f}".rstrip("0").rstrip(".")


def _number(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float | Decimal):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _kept(name: str, make: Callable[[], str]) -> str:
    """The text `make` returns, kept in the cache folder (sql.keep) as `name`, which names all the
    text depends on, so that a later report reads it instead of making it again."""
    kept = read_kept(name)
    if kept is not None:
        return kept.decode("utf-8")
    text = make()
    keep(name, text.encode("utf-8"))
    return text


def _vega_bundle(root: Path) -> str:
    """Vega, Vega-Lite and vega-embed as one script, from the vl-convert package (no download).
    Bundling takes vl-convert seconds of CPU and gives the same script for the same vl-convert,
    so the newest site's copy is reused when its first line names the same version, else the
    one kept in the cache folder for this version."""
    import vl_convert

    header = f"// Vega, Vega-Lite and vega-embed, bundled by vl-convert {vl_convert.__version__}\n"
    try:
        with (root / LATEST / "assets" / "vega.js").open(encoding="utf-8") as script:
            if script.readline() == header:
                return header + script.read()
    except OSError:  # none, or report/latest is not a site
        pass
    return _kept(f"vega-{vl_convert.__version__}.js", lambda: header + vl_convert.javascript_bundle())


def _chart_specs(first_day: dt.date, components: tuple[str, ...], metrics: tuple[str, ...]) -> dict[str, dict]:
    """The site's chart specs (charts.py). Altair takes most of a second to build them in a fresh
    process, and they depend only on the scorecard's components and metrics, Altair and charts.py
    (but for the first day, which charts.on_day sets), so they are kept in the cache folder."""
    import altair

    key = hashlib.sha256(json.dumps([altair.__version__, components, metrics]).encode()
                         + Path(charts.__file__).read_bytes()).hexdigest()
    kept = _kept(f"charts-{key}.json", lambda: json.dumps(charts.day_free_specs(components, metrics)))
    return charts.on_day(json.loads(kept), first_day)


def _write_site(folder: Path, data: _ReportData, config: HealthConfig, vega_bundle: str,
                account_json: Future[_AccountJson]) -> int:
    """Write every page and asset of the site into `folder`; return the number of pages."""
    assets = folder / "assets"
    assets.mkdir(parents=True)
    (assets / "vega.js").write_text(vega_bundle, encoding="utf-8")
    metrics = _metric_pages(data, config)
    specs = _chart_specs(data.first_day, config.components, tuple(metrics))
    (assets / "charts.js").write_text(
        "// The site's chart specs (Vega-Lite), by name; each chart's data is in its page.\n"
        f"window.REPORT_CHARTS = {json.dumps(specs, separators=(',', ':'))};\n", encoding="utf-8")
    for name in ("report.js", "report.css"):
        shutil.copyfile(HERE / "static" / name, assets / name)

    by_owner: dict[str | None, list[dict]] = defaultdict(list)
    for account in data.accounts:
        by_owner[account["owner"]].append(account)
    owners = sorted(by_owner, key=lambda owner: (owner is None, owner or ""))
    # The templates link a page by its name here: pages.accounts[id], pages.owners[owner], pages.metrics[metric].
    names = {"accounts": page_names(a["account_id"] for a in data.accounts), "owners": page_names(owners),
             "metrics": page_names(metrics)}
    common = {"report_date": data.report_date, "config": config, "components": config.components,
              "accounts_by_id": {a["account_id"]: a for a in data.accounts}, "pages": names}

    pages: list[tuple[str, str, dict]] = []  # (path in the site, template, its context)

    def write(path: str, template: str, **context) -> None:
        pages.append((path, template, {**common, **context, "root": "../" * path.count("/")}))

    at_risk = at_risk_by_health(data.accounts)
    onboarding_red = sorted(activation_red(data.accounts), key=lambda a: -(a["arr"] or 0))
    moves = sorted((c for a in data.accounts for c in data.band_changes.get(a["account_id"], [])
                    if c["snapshot_date"] == data.report_date),
                   key=lambda c: (c["direction"] != "worse", c["health_score"] is None, c["health_score"]))
    outlook = forecast(data.accounts, [{"lead_days": row["lead_days"], "health_band": b["band"], **b}
                                       for row in data.backtest for b in row["bands"] if b["band"]])
    write("index.html", "portfolio.html", data=data, owners=owners, metrics=metrics, breakdowns=BREAKDOWNS,
          outlook=outlook, windows=[(days, renewals_within(outlook.renewals, days)) for days in WINDOWS],
          horizon=HORIZON_DAYS, min_outcomes=MIN_OUTCOMES, bootstrap_samples=BOOTSTRAP_SAMPLES,
          score_points=[{"health_score": a["health_score"], "band": a["health_band"]} for a in data.accounts
                        if a["band_source"] == "score"],
          onboarding=[a for a in data.accounts if a["in_onboarding"]], at_risk=at_risk, onboarding_red=onboarding_red,
          moves=moves, arr_at_risk=arr_of(at_risk), arr_total=arr_of(data.accounts))
    owner_of = {a["account_id"]: a["owner"] for a in data.accounts}
    for owner in owners:
        accounts = by_owner[owner]
        write(f"owners/{names['owners'][owner]}.html", "owner.html", owner=owner, accounts=accounts, data=data,
              moves=[c for c in moves if owner_of[c["account_id"]] == owner],
              drops=sorted((a for a in accounts if (a["score_delta_7d"] or 0) < 0),
                           key=lambda a: a["score_delta_7d"])[:DROPS_SHOWN],
              at_risk=sorted(at_risk_by_health(accounts), key=lambda a: -(a["arr"] or 0)),
              onboarding_red=[a for a in onboarding_red if a["owner"] == owner],
              renewals=[a for a in outlook.renewals if a["owner"] == owner], horizon=HORIZON_DAYS)
    for metric, sections in metrics.items():
        write(f"metrics/{names['metrics'][metric]}.html", "metric.html", metric=metric, sections=sections,
              metrics=metrics)
    style = Style.from_settings()
    env = _templates(style)
    for path, template, context in pages:
        _write(folder / path, env.get_template(template).render(**context))
    _write_account_pages(folder, data, account_json.result(), config, names, by_owner, style,
                         env.get_template("account.html").render(**common, root="../"))
    return len(pages) + len(data.accounts)


def _write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def _write_account_pages(folder: Path, data: _ReportData, account_json: _AccountJson, config: HealthConfig,
                         names: dict, by_owner: dict, style: Style, page: str) -> None:
    """Every account's page, and the data it is drawn from. The pages are one page, which report.js
    fills in from the account's owner's data file (`data/<owner page>.js`, which the owner page's
    cards are drawn from too), found through `data/accounts.js`, by the page's own file name. So it
    is written once and linked under each account's name: thousands of rendered pages and files
    were most of a large site's build."""
    first, *others = (folder / "accounts" / f"{names['accounts'][a['account_id']]}.html" for a in data.accounts)
    _write(first, page)
    for path in others:
        try:
            os.link(first, path)
        except OSError:  # a file system without hard links
            shutil.copyfile(first, path)
    columns = {suffix: {c: explanation_column(c, suffix) for c in config.components}
               for suffix in ("points", "points_possible", "value", "bin")}
    for owner, accounts in by_owner.items():
        # The history and the contacts are DuckDB's JSON already: put in as they are.
        entries = ",".join(_json_with(_account_data(a, data, config, names, columns),
                                      {"history": account_json.history.get(a["account_id"], "{}")}) for a in accounts)
        contacts = {a["account_id"]: account_json.contacts[a["account_id"]]
                    for a in accounts if a["account_id"] in account_json.contacts}
        _write(folder / "data" / f"{names['owners'][owner]}.js", _script("REPORT_ACCOUNTS", _json_with(
            {"owner": owner, "owner_page": names["owners"][owner], "currency": style.symbol},
            {"accounts": f"[{entries}]"})) + _script("REPORT_CONTACTS", _json_with({}, contacts)))
    _write(folder / "data" / "accounts.js", _script("REPORT_OWNER_PAGES", _json(
        {names["accounts"][a["account_id"]]: names["owners"][a["owner"]] for a in data.accounts})))


def _account_data(account: dict, data: _ReportData, config: HealthConfig, names: dict,
                  columns: dict[str, dict[str, str]]) -> dict:
    """What an account's page and card show (but its contacts and its 90 days of history, which are
    JSON already): its sync table row, its page's name, each component it was scored on (points,
    possible points, value, bin), its band changes and its segment's band cut-offs."""
    account_id = account["account_id"]  # columns: a component's explanation columns, by suffix
    return {**account, "page": names["accounts"][account_id],
            "components": [[c, *(account[columns[suffix][c]] for suffix in columns)] for c in config.components
                           if account[columns["points_possible"][c]] is not None],
            "band_changes": data.band_changes.get(account_id, []), "cutoffs": _cutoffs(config, account["segment"])}


def _script(name: str, json_text: str) -> str:
    """The line `window.<name> = <JSON>;` of a data file: a page loads it with a script tag, which a
    browser allows from file:// where it refuses to fetch a JSON file. Being JavaScript, not HTML,
    nothing in it can end a tag."""
    return f"window.{name} = {json_text};\n"


def _json(value) -> str:
    """NaN and Infinity are written as JavaScript's own, which report.js shows as "–"."""
    return json.dumps(value, separators=(",", ":"), default=_json_default)


def _json_with(value: dict, members: dict[str, str]) -> str:
    """The object `value` as JSON, with `members` whose values are JSON text already put in as they are."""
    given = [f"{_json(name)}:{text}" for name, text in members.items()]
    return "{" + ",".join(filter(None, [_json(value)[1:-1], *given])) + "}"


def _cutoffs(config: HealthConfig, segment_name: str) -> list[dict]:
    """The band cut-offs of the segment's scorecard, for the account's score chart."""
    card = next((s.scorecard for s in config.segments if s.name == segment_name), config.scorecard)
    return [{"value": card.healthy_from, "label": "healthy from"},
            {"value": card.neutral_from, "label": "neutral from"}]


def _metric_pages(data: _ReportData, config: HealthConfig) -> dict[str, list[dict]]:
    """For each metric a component bins: per segment whose scorecard bins it, the accounts' values
    today, the bin edges, and the accounts in each bin."""
    pages: dict[str, list[dict]] = defaultdict(list)
    for segment in config.segments:
        in_segment = [a for a in data.accounts if a["segment"] == segment.name]
        if not in_segment:
            continue
        for component in segment.scorecard.components:
            counts = data.bin_counts.get((component.name, segment.name), {})
            value_column = explanation_column(component.name, "value")
            edges = sorted({edge for b in component.bins for edge in (b.lower, b.upper) if math.isfinite(edge)})
            pages[component.metric].append({
                "segment": segment.name,
                "component": component.name,
                "accounts": len(in_segment),
                "values": [{"value": a[value_column]} for a in in_segment if a[value_column] is not None],
                "edges": [{"value": edge, "label": f"edge {edge:g}"} for edge in edges],
                "bins": [{"label": b.label, "points": b.points, "accounts": counts.get(b.label, 0)}
                         for b in component.bins],
                "missing": counts.get(None, 0),
                "missing_policy": component.missing,
            })
    return dict(pages)


def _publish(staged: Path, root: Path, report_date: dt.date) -> Path:
    """Rename the site built under `staged` to `root/<date>` (an older build of that date, and a copy
    of a site standing at `root/latest`, are moved aside into `staged` first) and point `root/latest`
    at the newest date; each step is one rename."""
    day = report_date.isoformat()
    folder, replaced, latest = root / day, staged / "replaced", root / LATEST
    root.mkdir(parents=True, exist_ok=True)
    replaced.mkdir()
    if latest.exists() and not latest.is_symlink():
        _check_is_a_site_copy(latest)
        os.replace(latest, replaced / LATEST)
    if folder.exists():
        os.replace(folder, replaced / day)
    os.replace(staged / REPORT_DIR / day, folder)
    if not latest.is_symlink() or os.readlink(latest) <= day:
        link = staged / LATEST
        link.symlink_to(day, target_is_directory=True)
        os.replace(link, latest)
    return folder


def _check_is_a_site_copy(latest: Path) -> None:
    """`report/latest` is a real folder or file, not the link. A copy of a site (someone copied one
    there) may be replaced; anything else is the user's, and stops the run untouched."""
    if latest.is_dir():
        files = sorted(p.relative_to(latest).as_posix() for p in latest.rglob("*") if p.is_symlink() or not p.is_dir())
        foreign = [file for file in files if not _SITE_FILE.fullmatch(file)]
        if not files or ("index.html" in files and not foreign):
            return
        what = (f"a folder that is not a morning report ({len(files)} files, among them "
                f"{', '.join((foreign or files)[:3])})")
    else:
        what = "a file"
    raise ReportFolderError(f"{latest} is {what}, where the link to the newest report goes: move it elsewhere, "
                            "and the next run links report/latest to the newest report")
