"""A deterministic generator of realistic raw exports in Heap Connect layout.

Accounts follow archetypes (growing, steady, declining, churning, onboarding) that shape how
often their users show up. Internal and test users with junk identities, anonymous users later
merged into identified ones, and Heap-style duplicate rows are mixed in, as in real exports.
Days are generated and written one at a time, so memory stays flat at any volume.

`outcomes.parquet` is a CRM export of contract outcomes (renewed, churned, downgraded,
expanded), for backtesting the score. Contracts renew every three months from
`customer_since`, whatever the plan. At each contract date the account's
fate is drawn, with noise, from its engagement trajectory: churn grows sharply with a fall in
usage and breadth over the previous four weeks and with a low current level; growth favours
expansion. "churning" accounts, whose usage stops, churn at their next contract date or cancel a
few weeks later. A churned account's users stop showing up from its churn date, and the account
gets status 'churned' and `churned_at`; trial accounts have no contract and no outcomes. A paying
account's `renewal_date` is the end of its contract running at the window's end: the first
anniversary after it.

The planted signal is a decline in usage and breadth. The planted non-signal is seats (the
pipeline's contacts_total): neither the fate draw nor the contract cadence reads the plan or
the users, so seats say nothing about an outcome.

The CRM's signals (`csm_pulse`, `tickets`, `nps_responses`, `invoices`, and the accounts'
`seats_purchased`) are drawn from a stream of their own, after the outcomes. Their planted
answer: a CSM who checks in on an account every three to five weeks senses a churn coming
(CHURN_FORESIGHT_DAYS ahead) and records mostly red pulses then, and such an account often
stops paying its invoices on time (UNPAID_FORESIGHT_DAYS ahead). Their planted non-signal is
support tickets: each account opens them at a rate of its own that no fate reads (NPS answers
are drawn without regard to fate too).
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import itertools
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from health_pipeline.raw_input import CRM_TABLES

# The first day of the sample tests and benchmarks pin; the CLI's sample ends yesterday instead.
SAMPLE_START = dt.date(2026, 6, 1)
SAMPLE_DAYS = 120
MANIFEST = "_sample.json"  # the spec a raw directory's sample was generated with
LIVE_STREAM = 2  # a live sample's added days draw from their own streams
LIVE_ID_BLOCK = 10**9  # a live day's session and event ids start at day * this, clear of the window's

ARCHETYPES = ("growing", "steady", "declining", "churning", "onboarding")
ARCHETYPE_WEIGHTS = (0.2, 0.35, 0.2, 0.1, 0.15)
PLANS = {  # plan -> (share of accounts, median users, ARR range)
    "starter": (0.45, 6, (6_000, 20_000)),
    "growth": (0.4, 20, (20_000, 90_000)),
    "enterprise": (0.15, 60, (90_000, 400_000)),
}
VERTICALS = ("fintech", "ecommerce", "healthcare", "media", "saas", "education")
ROLES = ("admin", "analyst", "analyst", "analyst", "viewer", "viewer", "champion", "executive")
OWNERS = ("Ana Ruiz", "Ben Okafor", "Chloe Park", "Dev Patel", "Emma Stone")
# Larger samples spread their accounts over more CSMs, about this many accounts each, as real books are.
ACCOUNTS_PER_OWNER = 100
MORE_FIRST_NAMES = ("Femi", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Luca", "Maya", "Nils", "Omar")
MORE_LAST_NAMES = ("Adler", "Brooks", "Costa", "Diallo", "Eriksen", "Fischer", "Gupta", "Haddad", "Ito", "Jensen")


def owners(accounts: int) -> tuple[str, ...]:
    """The CSMs a sample's accounts belong to: OWNERS, and more beyond 500 accounts."""
    more = [f"{first} {last}" for last in MORE_LAST_NAMES for first in MORE_FIRST_NAMES]
    return OWNERS + tuple(more[:max(0, accounts // ACCOUNTS_PER_OWNER - len(OWNERS))])
# event -> mean count per session for a fully engaged user
EVENT_RATES = {
    "run_query": 3.0,
    "view_dashboard": 2.0,
    "save_report": 0.35,
    "group_by": 0.6,
    "share_report": 0.15,
    "create_alert": 0.1,
}
DUPLICATE_RATE = 0.01
CHURNING_STOPS_AT = 0.45  # progress at which a "churning" account's usage stops

# Outcomes
OUTCOME_STREAM = 1  # outcomes draw from their own stream, so the activity stream is unchanged
# plan -> contract length in months: the same for every plan, so how many outcomes an account
# has does not depend on its size (seats stay a metric with no signal).
CONTRACT_MONTHS = {"starter": 3, "growth": 3, "enterprise": 3}
# No outcome before this sample day: until then the pipeline has not seen 28 days of usage.
OUTCOME_WARMUP_DAYS = 35
LOOKBACK_DAYS = 28  # the fate compares engagement now with this many days earlier
ENGAGED_LEVEL = 0.7  # intensity at or above which the current level adds no churn risk
CANCEL_AFTER_DAYS = (14, 36)  # a churning account without a contract date left cancels this long after stopping
CHURN_REASONS = ("low usage", "moved to a competitor", "budget cuts", "champion left", "no longer needed")
DOWNGRADE_REASONS = ("budget cuts", "reduced usage", "fewer teams using it", "consolidating tools")
# The CRM's signals
SIGNALS_STREAM = 3  # drawn after the outcomes, from a stream of their own: nothing else moves
CHURN_FORESIGHT_DAYS = 60  # how far ahead a churn shows in pulses
UNPAID_FORESIGHT_DAYS = 90  # and in invoices paid late or not at all
PULSE_EVERY_DAYS = (21, 36)  # a CSM's check-ins, every three to five weeks
PULSE_ODDS = {True: (0.1, 0.3, 0.6), False: (0.65, 0.28, 0.07)}  # churn ahead? -> green, yellow, red
LATE_PAYMENT_ODDS = {True: 0.7, False: 0.05}  # churn ahead? -> an invoice paid late or not at all
INVOICE_HISTORY_DAYS = 60  # monthly invoices fall due from this long before the window on
TICKET_RATES = (0.01, 0.12)  # each account's tickets a day, drawn once; no fate reads it
TICKET_PRIORITIES = (("low", 0.3), ("normal", 0.45), ("high", 0.2), ("urgent", 0.05))
NPS_SHARE = 0.3  # the users who answer the survey once in the window
NPS_WEIGHTS = np.array([1, 1, 1, 1, 2, 3, 4, 6, 8, 7, 6], dtype=float)  # scores 0..10
SIGNAL_TABLES = ("csm_pulse", "tickets", "nps_responses", "invoices")
OUTCOMES_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("outcome_date", pa.date32()),
        ("outcome", pa.string()),  # renewed, churned, downgraded or expanded
        ("arr_before", pa.float64()),
        ("arr_after", pa.float64()),  # 0 for churned
        ("reason", pa.string()),  # free text for churns and downgrades
    ]
)


@dataclass(frozen=True)
class SampleSpec:
    accounts: int = 60
    days: int = SAMPLE_DAYS
    seed: int = 7
    start: dt.date = SAMPLE_START
    users_scale: float = 1.0  # multiplies every account's size
    events_scale: float = 1.0  # multiplies every event's mean count per session
    # A live sample grows: each run first adds the days it covers past the window (extend_sample),
    # so a demo instance left running keeps scoring day after day.
    live: bool = False

    @property
    def end(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)

    @classmethod
    def ending(cls, end: dt.date, **fields) -> "SampleSpec":
        """A spec whose window ends on `end`."""
        days = fields.pop("days", SAMPLE_DAYS)
        return cls(days=days, start=end - dt.timedelta(days=days - 1), **fields)


def intensity(archetype: np.ndarray, progress: float, onboard_at: np.ndarray) -> np.ndarray:
    """How engaged an account is at `progress` (0 = first sample day, 1 = last), per archetype."""
    curves = {
        "growing": 0.45 + 0.75 * progress,
        "steady": np.full_like(onboard_at, 0.9),
        "declining": np.clip(1.05 - 1.15 * progress, 0.04, None),
        "churning": np.where(progress < CHURNING_STOPS_AT, 0.85 - 1.2 * progress, 0.0),
        "onboarding": np.where(
            progress >= onboard_at, np.clip(0.25 + 2.5 * (progress - onboard_at), 0, 0.95), 0.0
        ),
    }
    out = np.zeros(len(archetype))
    for name, curve in curves.items():
        out = np.where(archetype == name, curve, out)
    return out


def generate_sample(out: Path, spec: SampleSpec = SampleSpec()) -> dict[str, int]:
    """Write users, accounts, user_migrations, outcomes, the CRM's signal tables, sessions/ and
    all_events/ under `out`, and the spec as `_sample.json` (the loader skips names starting with `_`)."""
    out = Path(out)
    for stale in ("sessions", "all_events"):
        shutil.rmtree(out / stale, ignore_errors=True)
    (out / "sessions").mkdir(parents=True, exist_ok=True)
    (out / "all_events").mkdir(parents=True, exist_ok=True)

    rng, population = _population(spec)
    accounts, users, migrations, outcomes = (population.accounts, population.users, population.migrations,
                                             population.outcomes)
    signals = _signals(spec, population)
    accounts.drop(columns=["archetype", "onboard_at", "feature_affinity"]).to_parquet(
        out / "accounts.parquet", index=False
    )
    for name, table in signals.items():
        table.to_parquet(out / f"{name}.parquet", index=False)
    users[["user_id", "identity", "joindate", "account_id", "role"]].to_parquet(
        out / "users.parquet", index=False
    )
    migrations.to_parquet(out / "user_migrations.parquet", index=False)
    # An explicit schema types the columns even when the window is too short for any outcome.
    pq.write_table(
        pa.Table.from_pandas(outcomes, schema=OUTCOMES_SCHEMA, preserve_index=False), out / "outcomes.parquet"
    )
    counts = {
        "accounts": len(accounts), "users": len(users), "outcomes": len(outcomes), "sessions": 0, "events": 0,
        **{name: len(table) for name, table in signals.items()},
    }
    first_ids = (1, 1)
    for day in range(spec.days):
        first_ids = _write_day(out, rng, spec, population, day, first_ids, counts)
    (out / MANIFEST).write_text(json.dumps({**dataclasses.asdict(spec), "start": spec.start.isoformat()}, indent=2))
    return counts


def sample_spec(raw_dir: Path) -> SampleSpec | None:
    """The spec a raw directory's sample was generated with; None when it holds no sample."""
    manifest = Path(raw_dir) / MANIFEST
    if not manifest.exists():
        return None
    fields = json.loads(manifest.read_text())
    return SampleSpec(**{**fields, "start": dt.date.fromisoformat(fields["start"])})


def extend_sample(raw_dir: Path, through: dt.date) -> list[dt.date]:
    """Generate a live sample's missing days up to `through`, and return them (none unless live).

    A day past the generated window is drawn from its own random stream (seed, LIVE_STREAM, day),
    so each day's bytes are the same whenever and in whatever order days are added. Accounts keep
    the trajectory they had on the window's last day, and no outcome is added."""
    spec = sample_spec(raw_dir)
    if spec is None or not spec.live:
        return []
    missing = [day for day in range(spec.days, (through - spec.start).days + 1)
               if not (Path(raw_dir) / "all_events" / f"{spec.start + dt.timedelta(days=day)}.parquet").exists()]
    if not missing:
        return []
    _, population = _population(spec)
    counts = {"sessions": 0, "events": 0}
    for day in missing:
        rng = np.random.default_rng([spec.seed, LIVE_STREAM, day])
        _write_day(Path(raw_dir), rng, spec, population, day, (day * LIVE_ID_BLOCK, day * LIVE_ID_BLOCK), counts)
    return [spec.start + dt.timedelta(days=day) for day in missing]


@dataclass(frozen=True)
class _Population:
    accounts: pd.DataFrame
    users: pd.DataFrame
    migrations: pd.DataFrame
    outcomes: pd.DataFrame
    user_account: np.ndarray  # each user's account's row
    user_churn_day: np.ndarray  # the sample day from which each user's account has churned


def _population(spec: SampleSpec) -> tuple[np.random.Generator, _Population]:
    """The accounts, users and outcomes of a spec, and the random stream the days continue from."""
    rng = np.random.default_rng(spec.seed)
    accounts = _accounts(rng, spec)
    users, migrations = _users(rng, spec, accounts)
    outcomes = _outcomes(spec, accounts)
    churned = outcomes.loc[outcomes["outcome"] == "churned"]
    churn_date = dict(zip(churned["account_id"], churned["outcome_date"]))
    # Typed as a date even when no account churned in the window.
    accounts["churned_at"] = pd.array(
        [churn_date.get(a) for a in accounts["account_id"]], dtype=pd.ArrowDtype(pa.date32())
    )
    accounts["status"] = np.where(accounts["churned_at"].notna(), "churned", accounts["status"])
    # The end of the contract running at the window's end, where one runs: a paying account's.
    accounts["renewal_date"] = pd.array(
        [_renewal_date(since, CONTRACT_MONTHS[plan], spec) if status == "paying" else None
         for since, plan, status in zip(accounts["customer_since"], accounts["plan"], accounts["status"])],
        dtype=pd.ArrowDtype(pa.date32()))
    account_index = {a: i for i, a in enumerate(accounts["account_id"])}
    user_account = users["account_id"].map(account_index).fillna(-1).astype(int).to_numpy()
    # The sample day from which each user's account has churned (never, if it has not).
    churn_day = np.array([np.iinfo(np.int64).max if pd.isna(d) else (d - spec.start).days
                          for d in accounts["churned_at"]])
    user_churn_day = churn_day[users["account_of"].to_numpy()]
    return rng, _Population(accounts, users, migrations, outcomes, user_account, user_churn_day)


def _write_day(out: Path, rng, spec: SampleSpec, population: _Population, day: int, first_ids: tuple[int, int],
               counts: dict) -> tuple[int, int]:
    """Draw and write one sample day's sessions and events; return the next session and event ids."""
    date = spec.start + dt.timedelta(days=day)
    next_session, next_event = first_ids
    sessions, events = _day(rng, spec, date, day, population.accounts, population.users, population.user_account)
    sessions.insert(0, "session_id", np.arange(next_session, next_session + len(sessions)))
    next_session += len(sessions)
    events = events.merge(sessions[["session_id", "session_no"]], on="session_no")
    events.insert(0, "event_id", np.arange(next_event, next_event + len(events)))
    next_event += len(events)
    sessions = sessions.drop(columns="session_no")
    events = events[["event_id", "user_id", "session_id", "time", "event_table_name"]]
    # Churned accounts' users stop from the churn date. Their rows are dropped after every draw,
    # not gated before, so the other accounts' activity stays draw for draw the same.
    gone = population.users["user_id"].to_numpy()[population.user_churn_day <= day]
    counts["sessions"] += len(sessions) - int(sessions["user_id"].isin(gone).sum())
    counts["events"] += len(events) - int(events["user_id"].isin(gone).sum())
    sessions = _with_duplicates(rng, sessions)
    events = _with_duplicates(rng, events)
    if len(gone):
        sessions = sessions[~sessions["user_id"].isin(gone)]
        events = events[~events["user_id"].isin(gone)]
    sessions.to_parquet(out / "sessions" / f"{date}.parquet", index=False)
    events.sort_values("time").to_parquet(out / "all_events" / f"{date}.parquet", index=False, row_group_size=256_000)
    return next_session, next_event


def _accounts(rng: np.random.Generator, spec: SampleSpec) -> pd.DataFrame:
    n = spec.accounts
    plan_names = list(PLANS)
    plans = rng.choice(plan_names, size=n, p=[PLANS[p][0] for p in plan_names])
    archetypes = rng.choice(ARCHETYPES, size=n, p=ARCHETYPE_WEIGHTS)
    # Each archetype appears at least once when there is room, so every story is in the sample.
    archetypes[: min(n, len(ARCHETYPES))] = ARCHETYPES[: min(n, len(ARCHETYPES))]
    onboard_at = np.where(archetypes == "onboarding", rng.uniform(0.35, 0.75, n), 0.0)
    since_days = np.where(
        archetypes == "onboarding",
        np.round(onboard_at * spec.days),
        -rng.integers(120, 1500, n),
    ).astype(int)
    arr = np.array([rng.integers(*PLANS[p][2]) for p in plans])
    # Churned status comes from the outcomes (generate_sample).
    status = np.where((archetypes == "onboarding") & (rng.random(n) < 0.3), "trial", "paying")
    rng.random(n)  # a retired draw, kept so that the rest of the stream stays the same
    return pd.DataFrame(
        {
            "account_id": [f"A{i:05d}" for i in range(1, n + 1)],
            "name": [f"{_company_name(rng)} {i}" for i in range(1, n + 1)],
            "owner": rng.choice(owners(n), size=n),
            "plan": plans,
            "arr": arr.astype(float),
            "vertical": rng.choice(VERTICALS, size=n),
            "customer_since": [spec.start + dt.timedelta(days=int(d)) for d in since_days],
            "status": status,
            # The CRM's own id, Salesforce-style (18 characters), for imports that match on it.
            "crm_account_id": [f"001Hs00000{i:05d}AAA" for i in range(1, n + 1)],
            "archetype": archetypes,
            "onboard_at": onboard_at,
            "feature_affinity": rng.uniform(0.1, 1.0, n),
        }
    )


def _outcomes(spec: SampleSpec, accounts: pd.DataFrame) -> pd.DataFrame:
    """Contract outcomes in the sample window, from each account's engagement trajectory.

    The plan sets only the contract cadence; no draw reads the plan or the users, so that seats
    carry no signal. ARR carries over: each outcome's arr_before is the previous one's arr_after."""
    rng = np.random.default_rng([spec.seed, OUTCOME_STREAM])
    last = spec.days - 1
    stop_day = math.ceil(CHURNING_STOPS_AT * max(1, last))
    # An account's lasting disposition, so that fates are noisy but consistent per account.
    loyalty = rng.normal(0.0, 0.5, len(accounts))
    rows = []
    for i, account in enumerate(accounts.itertuples(index=False)):
        if account.status == "trial":  # no contract yet
            continue
        arr = float(account.arr)
        churned = False
        for day in _contract_days(account.customer_since, CONTRACT_MONTHS[account.plan], spec):
            if account.archetype == "churning" and day >= stop_day:
                outcome = "churned"
            else:
                # A churning account churns only once its usage has stopped, so the score sees it coming.
                can_churn = account.archetype != "churning"
                outcome = _fate(rng, account.archetype, account.onboard_at, day, spec, loyalty[i], can_churn)
            arr_after = _arr_after(rng, outcome, arr)
            rows.append((account.account_id, day, outcome, arr, arr_after, _reason(rng, outcome)))
            arr, churned = arr_after, outcome == "churned"
            if churned:
                break
        if account.archetype == "churning" and not churned and max(stop_day, OUTCOME_WARMUP_DAYS) <= last:
            # No contract date left after usage stopped: it cancels, still inside the window.
            day = min(last, max(OUTCOME_WARMUP_DAYS, stop_day + int(rng.integers(*CANCEL_AFTER_DAYS))))
            rows.append((account.account_id, day, "churned", arr, 0.0, "cancelled"))
    outcomes = pd.DataFrame(rows, columns=["account_id", "day", "outcome", "arr_before", "arr_after", "reason"])
    dates = [spec.start + dt.timedelta(days=int(d)) for d in outcomes["day"]]
    outcomes.insert(1, "outcome_date", np.array(dates, dtype=object))  # object even when empty
    return outcomes.drop(columns="day").sort_values(["outcome_date", "account_id"], ignore_index=True)


def _signals(spec: SampleSpec, population: _Population) -> dict[str, pd.DataFrame]:
    """The CRM's signal tables of every contracted account, up to its churn, and each account's
    seats_purchased (added to population.accounts): see the module's docstring for what they plant."""
    rng = np.random.default_rng([spec.seed, SIGNALS_STREAM])
    accounts, users = population.accounts, population.users
    identified = users[users["identity"].notna() & users["account_id"].notna()]
    seats = identified.groupby("account_id").size()
    accounts["seats_purchased"] = np.ceil(
        accounts["account_id"].map(seats).fillna(1).to_numpy() * rng.uniform(1.0, 1.6, len(accounts)))
    rows: dict[str, list] = {name: [] for name in SIGNAL_TABLES}
    for account in accounts.itertuples(index=False):
        if account.status == "trial":  # no contract: no CSM check-ins, no invoices
            continue
        first = max(0, (account.customer_since - spec.start).days)
        end = spec.days if pd.isna(account.churned_at) else min(spec.days, (account.churned_at - spec.start).days)

        def churn_ahead(day: int, foresight: int = CHURN_FORESIGHT_DAYS) -> bool:
            return 0 <= end - day <= foresight and end < spec.days

        day = first + int(rng.integers(0, PULSE_EVERY_DAYS[1]))
        while day < end:
            sentiment = rng.choice(("green", "yellow", "red"), p=PULSE_ODDS[churn_ahead(day)])
            rows["csm_pulse"].append((account.account_id, spec.start + dt.timedelta(days=day), str(sentiment),
                                      None, account.owner))
            day += int(rng.integers(*PULSE_EVERY_DAYS))
        for due in _monthly(account.customer_since, spec.start - dt.timedelta(days=INVOICE_HISTORY_DAYS), spec.end):
            due_day = (due - spec.start).days
            if due_day >= end:
                break
            if rng.random() < LATE_PAYMENT_ODDS[churn_ahead(due_day, UNPAID_FORESIGHT_DAYS)]:
                paid = None if rng.random() < 0.5 else due + dt.timedelta(days=int(rng.integers(25, 61)))
            else:
                paid = due + dt.timedelta(days=int(rng.integers(-5, 11)))
            rows["invoices"].append((f"INV-{account.account_id}-{due:%Y%m}", account.account_id, due,
                                     paid if paid is not None and paid <= spec.end else None,
                                     round(float(account.arr) / 12, 2)))
        for opened in np.sort(rng.uniform(first, end, rng.poisson(rng.uniform(*TICKET_RATES) * max(0, end - first)))):
            closed = opened + rng.exponential(3.0)
            rows["tickets"].append((
                f"T-{account.account_id}-{len(rows['tickets']) + 1}", account.account_id, _sample_time(spec, opened),
                _sample_time(spec, closed) if closed < spec.days else None,
                str(rng.choice([p for p, _ in TICKET_PRIORITIES], p=[w for _, w in TICKET_PRIORITIES])),
                "closed" if closed < spec.days else "open"))
    answering = identified[rng.random(len(identified)) < NPS_SHARE]
    days = rng.uniform(0, spec.days, len(answering))
    scores = rng.choice(len(NPS_WEIGHTS), size=len(answering), p=NPS_WEIGHTS / NPS_WEIGHTS.sum())
    until = population.user_churn_day[answering.index.to_numpy()]
    rows["nps_responses"] = [(user, _sample_time(spec, day), int(score)) for user, day, score, stop, joined
                             in zip(answering["user_id"], days, scores, until, answering["joindate_idx"])
                             if joined <= day < stop]
    columns = {"csm_pulse": ["account_id", "pulse_date", "sentiment", "note", "author"],
               "invoices": ["invoice_id", "account_id", "due_date", "paid_at", "amount"],
               "tickets": ["ticket_id", "account_id", "opened_at", "closed_at", "priority", "status"],
               "nps_responses": ["user_id", "responded_at", "score"]}
    tables = {name: pd.DataFrame(rows[name], columns=columns[name]) for name in SIGNAL_TABLES}
    for name, column in (("csm_pulse", "pulse_date"), ("invoices", "due_date"), ("invoices", "paid_at")):
        tables[name][column] = pd.array(tables[name][column], dtype=pd.ArrowDtype(pa.date32()))
    for name, column in (("tickets", "opened_at"), ("tickets", "closed_at"), ("nps_responses", "responded_at")):
        tables[name][column] = pd.to_datetime(tables[name][column])
    return tables


def _sample_time(spec: SampleSpec, day: float) -> pd.Timestamp:
    """The instant `day` (fractional) sample days after the window's first midnight, to the second."""
    return (pd.Timestamp(spec.start) + pd.to_timedelta(day, "D")).floor("s")


def _monthly(since: dt.date, first: dt.date, last: dt.date) -> list[dt.date]:
    """The monthly anniversaries of `since` in [first, last], on or after `since`."""
    dates = itertools.takewhile(lambda date: date <= last, itertools.chain([since], _contract_dates(since, 1)))
    return [date for date in dates if date >= first]


def _contract_dates(since: dt.date, months: int):
    """The contract anniversaries of `since`, every `months` months, forever."""
    k = 1
    while True:
        total = since.month - 1 + k * months
        year, month = since.year + total // 12, total % 12 + 1
        # The 31st renews on the last day of shorter months.
        yield dt.date(year, month, min(since.day, calendar.monthrange(year, month)[1]))
        k += 1


def _contract_days(since: dt.date, months: int, spec: SampleSpec) -> list[int]:
    """Sample days of the contract anniversaries of `since` every `months`, from the warm-up on."""
    days = []
    for date in _contract_dates(since, months):
        day = (date - spec.start).days
        if day >= spec.days:
            return days
        if day >= OUTCOME_WARMUP_DAYS:
            days.append(day)


def _renewal_date(since: dt.date, months: int, spec: SampleSpec) -> dt.date:
    """The first contract anniversary after the window: the end of the contract running at its end."""
    return next(date for date in _contract_dates(since, months) if date > spec.end)


def _fate(
    rng: np.random.Generator,
    archetype: str,
    onboard_at: float,
    day: int,
    spec: SampleSpec,
    loyalty: float,
    can_churn: bool = True,
) -> str:
    """Draw one contract outcome from the account's engagement now and four weeks earlier."""
    span = max(1, spec.days - 1)
    now, before = (
        float(intensity(np.array([archetype]), d / span, np.array([onboard_at]))[0])
        for d in (day, day - LOOKBACK_DAYS)
    )
    scale = max(before, now, 0.05)
    decline = min(1.0, max(0.0, (before - now) / scale))  # relative fall of usage and breadth
    growth = min(1.0, max(0.0, (now - before) / scale))
    low = min(1.0, max(0.0, 1 - now / ENGAGED_LEVEL))
    p_churn = _sigmoid(-3.6 + 7.0 * decline + 2.5 * low - loyalty)
    p_downgrade = _sigmoid(-2.0 + 6.0 * decline + 2.0 * low - loyalty)
    p_expand = _sigmoid(-1.6 + 3.0 * growth - 1.5 * low + loyalty)
    if can_churn and rng.random() < p_churn:
        return "churned"
    if rng.random() < p_downgrade:
        return "downgraded"
    return "expanded" if rng.random() < p_expand else "renewed"


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _arr_after(rng: np.random.Generator, outcome: str, arr: float) -> float:
    if outcome == "churned":
        return 0.0
    if outcome == "expanded":
        return round(arr * (1 + rng.uniform(0.1, 0.4)), 2)
    if outcome == "downgraded":
        return round(arr * (1 - rng.uniform(0.2, 0.5)), 2)
    return arr


def _reason(rng: np.random.Generator, outcome: str) -> str | None:
    reasons = {"churned": CHURN_REASONS, "downgraded": DOWNGRADE_REASONS}.get(outcome)
    return None if reasons is None else str(rng.choice(reasons))


def _company_name(rng: np.random.Generator) -> str:
    first = ("Blue", "North", "Bright", "Clear", "Swift", "Iron", "Lumen", "Cedar", "Atlas")
    second = ("Analytics", "Labs", "Retail", "Health", "Media", "Systems", "Works", "Cloud")
    return f"{rng.choice(first)} {rng.choice(second)}"


def _users(rng: np.random.Generator, spec: SampleSpec, accounts: pd.DataFrame):
    plan_median = accounts["plan"].map({p: v[1] for p, v in PLANS.items()}).to_numpy()
    sizes = np.maximum(1, rng.lognormal(np.log(plan_median * spec.users_scale), 0.45)).astype(int)
    account_of = np.repeat(np.arange(len(accounts)), sizes)
    n = len(account_of)
    user_ids = np.arange(1_000_001, 1_000_001 + n)
    since = accounts["customer_since"].to_numpy()[account_of]
    onboarding = accounts["archetype"].to_numpy()[account_of] == "onboarding"
    # Onboarding accounts' users join in their first month; a few users of established
    # accounts join during the sample, the rest predate it.
    since_idx = np.array([(s - spec.start).days for s in since])
    joindate_idx = np.where(
        onboarding,
        since_idx + rng.integers(0, 30, n),
        np.where(rng.random(n) < 0.12, rng.integers(0, spec.days, n), -rng.integers(1, 400, n)),
    )
    joindate = [spec.start + dt.timedelta(days=int(d)) for d in joindate_idx]
    domains = accounts["name"].str.lower().str.replace(" ", "", regex=False).to_numpy()[account_of]
    identity = np.array([f"user{u}@{d}.com" for u, d in zip(user_ids, domains)], dtype=object)
    # Internal staff and test logins: junk identities the pipeline must exclude.
    junk = rng.random(n)
    identity[junk < 0.03] = [f"qa{u}@garbage.io" for u in user_ids[junk < 0.03]]
    identity[(junk >= 0.03) & (junk < 0.045)] = ""
    identity[(junk >= 0.045) & (junk < 0.06)] = None
    users = pd.DataFrame(
        {
            "user_id": user_ids.astype(str),
            "identity": identity,
            "joindate": pd.to_datetime(joindate),
            "account_id": accounts["account_id"].to_numpy()[account_of],
            "role": rng.choice(ROLES, size=n),
            # A quarter of seats are bought but never used; the rest range from light to power users.
            "propensity": np.where(rng.random(n) < 0.25, 0.0, rng.beta(1.3, 3.0, n)),
            "joindate_idx": joindate_idx,
        }
    )
    # A few users lost their account property upstream.
    users.loc[rng.random(n) < 0.01, "account_id"] = None
    # Anonymous pre-login users, merged into the identified user on their first sample day.
    merged = rng.choice(n, size=max(1, n // 25), replace=False)
    anon_ids = np.arange(9_000_001, 9_000_001 + len(merged)).astype(str)
    anon = pd.DataFrame(
        {
            "user_id": anon_ids,
            "identity": None,
            "joindate": users["joindate"].to_numpy()[merged],
            "account_id": None,
            "role": None,
            "propensity": users["propensity"].to_numpy()[merged],
            "joindate_idx": users["joindate_idx"].to_numpy()[merged],
            "merges_into": users["user_id"].to_numpy()[merged],
        }
    )
    migrations = pd.DataFrame(
        {
            "from_user_id": anon_ids,
            "to_user_id": anon["merges_into"],
            "time": pd.to_datetime(users["joindate"].to_numpy()[merged]) + pd.Timedelta(hours=12),
        }
    )
    users = pd.concat([users, anon.drop(columns="merges_into")], ignore_index=True)
    users["account_of"] = np.concatenate([account_of, account_of[merged]])
    return users, migrations


def _day(rng, spec, date, day, accounts, users, user_account):
    progress = min(1.0, day / max(1, spec.days - 1))  # a live sample's later days keep the last day's trajectory
    account_intensity = intensity(
        accounts["archetype"].to_numpy(), progress, accounts["onboard_at"].to_numpy()
    )
    weekday_factor = 0.3 if date.weekday() >= 5 else 1.0
    is_anon = users["user_id"].str.startswith("9").to_numpy()
    joined = users["joindate_idx"].to_numpy() <= day
    # Anonymous users act only before their merge; identified users act from joining on.
    anon_window = is_anon & (users["joindate_idx"].to_numpy() == day)
    eligible = np.where(is_anon, anon_window, joined)
    p_active = (
        0.75 * users["propensity"].to_numpy()
        * account_intensity[users["account_of"].to_numpy()]
        * weekday_factor
    )
    active = np.flatnonzero(eligible & (rng.random(len(users)) < p_active))
    n_sessions = 1 + rng.poisson(0.8, len(active))
    session_user = np.repeat(active, n_sessions)
    starts = pd.Timestamp(date) + pd.to_timedelta(rng.uniform(6 * 3600, 21 * 3600, len(session_user)), "s")
    sessions = pd.DataFrame(
        {
            "session_no": np.arange(len(session_user)),
            "user_id": users["user_id"].to_numpy()[session_user],
            "time": starts.floor("ms"),
        }
    )
    frames = []
    affinity = accounts["feature_affinity"].to_numpy()[users["account_of"].to_numpy()[session_user]]
    engagement = users["propensity"].to_numpy()[session_user]
    for event, rate in EVENT_RATES.items():
        scale = affinity if event in ("save_report", "group_by", "share_report") else 1.0
        n = rng.poisson(rate * spec.events_scale * (0.4 + engagement) * scale)
        idx = np.repeat(np.arange(len(session_user)), n)
        offsets = pd.to_timedelta(rng.uniform(0, 5400, len(idx)), "s")
        frames.append(
            pd.DataFrame(
                {
                    "session_no": idx,
                    "user_id": sessions["user_id"].to_numpy()[idx],
                    "time": (starts[idx] + offsets).floor("ms"),
                    "event_table_name": event,
                }
            )
        )
    return sessions, pd.concat(frames, ignore_index=True)


def _with_duplicates(rng: np.random.Generator, df: pd.DataFrame) -> pd.DataFrame:
    """Repeat about 1% of rows, as Heap re-syncs do."""
    dupes = df[rng.random(len(df)) < DUPLICATE_RATE]
    return pd.concat([df, dupes], ignore_index=True)


# --- The same sample as Heap Connect's S3 delivery --------------------------------------------------

DELIVERY_BUCKET = "heap-rs3-sample"
DUMP_DAYS = 7  # each dump delivers a week of activity, as a weekly Heap Connect sync would
RESYNCED_EVENT = "share_report"  # its early dumps carry rows of an older definition; a resync replaces them
OLD_DEFINITION_ID = 10**12  # those rows' event ids start here, clear of the sample's own
IDENTIFIED_LATER = 5  # every this-many-th user is delivered first with no identity and no role


def write_heap_delivery(sample_dir: Path, out: Path, bucket: str = DELIVERY_BUCKET,
                        dump_days: int = DUMP_DAYS) -> dict[str, int]:
    """Write the folder sample in `sample_dir` again as Heap Connect's S3 delivery, a local copy of
    `s3://<bucket>/`, under `out`: one dump per `dump_days` days with `manifests/sync_<id>.json`,
    each table's Avro files under `sync_<id>/<table>/`, and the CRM's tables beside
    them. Read back (health_pipeline.sources.heap_s3), it is the same sample, through every rule
    of the delivery: users first delivered without their identity, and updated by a dump halfway;
    events delivered again by that dump; share_report's dumps before it holding rows of an older
    event definition, which a full resync right after it replaces; run_query split over two files
    a dump. Days are read and written a dump at a time, so memory stays flat at any scale."""
    import duckdb
    import polars as pl

    sample_dir, out = Path(sample_dir), Path(out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "manifests").mkdir(parents=True)
    for crm in CRM_TABLES:
        if (sample_dir / f"{crm}.parquet").exists():
            shutil.copyfile(sample_dir / f"{crm}.parquet", out / f"{crm}.parquet")
    days = sorted(path.stem for path in (sample_dir / "all_events").glob("*.parquet"))
    dumps = [days[i:i + dump_days] for i in range(0, len(days), dump_days)]
    writer = _DeliveryWriter(out, bucket)
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET enable_progress_bar = false")

        def read(*names: str):
            return conn.sql("SELECT * FROM read_parquet($files)",
                            params={"files": [str(sample_dir / name) for name in names]}).pl()

        users = read("users.parquet")
        later = users.with_row_index("n").filter(pl.col("n") % IDENTIFIED_LATER == 0).drop("n")
        unknown_yet = pl.col("user_id").is_in(later["user_id"].implode())
        first_users = users.with_columns(pl.when(unknown_yet).then(None).otherwise(pl.col(c)).alias(c)
                                         for c in ("identity", "role"))
        halfway = len(dumps) // 2
        for number, dump in enumerate(dumps):
            events = read(*(f"all_events/{day}.parquet" for day in dump))
            tables = {"sessions": [read(*(f"sessions/{day}.parquet" for day in dump))]}
            for name in sorted(events["event_table_name"].unique().to_list()):
                rows = _heap_event_table(events, name)
                if name == RESYNCED_EVENT and number < halfway:  # the older definition matched more
                    rows = rows.vstack(rows.head(len(rows) // 4).with_columns(pl.col("event_id") + OLD_DEFINITION_ID))
                tables[name] = [rows.head(len(rows) // 2), rows.tail(len(rows) - len(rows) // 2)] \
                    if name == "run_query" else [rows]
            if number == 0:
                tables |= {"users": [first_users], "user_migrations": [read("user_migrations.parquet")]}
            writer.dump(tables, full=number == 0)
            if number == halfway:
                again = tables["run_query"][0]
                writer.dump({"run_query": [again.head(max(1, len(again) // 10))], "users": [later]}, full=False)
                redelivery = writer.dump_id
                so_far = read(*(f"all_events/{day}.parquet" for part in dumps[:number + 1] for day in part))
                writer.dump({RESYNCED_EVENT: [_heap_event_table(so_far, RESYNCED_EVENT)]}, full=True)
    if (sample_dir / MANIFEST).exists():
        shutil.copyfile(sample_dir / MANIFEST, out / MANIFEST)
    return {"dumps": writer.dump_id, "files": writer.files, "redelivery_dump": redelivery,
            "resync_dump": redelivery + 1, "users": len(users)}


def _heap_event_table(events, name: str):
    """One event's rows as Heap delivers its table: no event_table_name, and properties of its own."""
    import polars as pl

    return (events.filter(pl.col("event_table_name") == name).drop("event_table_name")
            .with_columns(pl.lit("web").alias("library"), pl.lit(f"/app/{name}").alias("path")))


class _DeliveryWriter:
    def __init__(self, out: Path, bucket: str):
        self.out, self.bucket, self.dump_id, self.files = out, bucket, 0, 0

    def dump(self, tables: dict, full: bool) -> None:
        """Write one dump: each table's parts as Avro (times in milliseconds), then its manifest;
        `full`: every table of the dump is a full resync (incremental: false)."""
        import polars as pl

        self.dump_id += 1
        listed = []
        for name, parts in tables.items():
            files = []
            for i, part in enumerate(parts):
                key = f"sync_{self.dump_id}/{name}/part-{i:05d}-{self.dump_id:08x}.avro"
                (self.out / key).parent.mkdir(parents=True, exist_ok=True)
                part.with_columns(pl.col(pl.Datetime).dt.cast_time_unit("ms")).write_avro(self.out / key, name=name)
                files.append(f"s3://{self.bucket}/{key}")
            self.files += len(files)
            listed.append({"name": name, "columns": parts[0].columns, "files": files, "incremental": not full})
        manifest = {"dump_id": self.dump_id, "tables": listed}
        (self.out / "manifests" / f"sync_{self.dump_id}.json").write_text(json.dumps(manifest, indent=2))

