"""alerts against real local servers: a Slack webhook stand-in (an HTTP server on 127.0.0.1) and
an SMTP server (aiosmtpd on 127.0.0.1). What is sent, once; what is not sent for past days; a
sink that is down or slow; the rules; and secrets that must not be in the file."""

from __future__ import annotations

import datetime as dt
import email
import io
import json
import logging
import re
import threading
import time
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from hypothesis import given, settings
from hypothesis import strategies as st

from health_pipeline.assets.alerts.asset import SEND_PAST_TAG
from health_pipeline.assets.alerts.messages import SLACK_ACCOUNTS_PER_MESSAGE, messages
from health_pipeline.progress import ConsoleLines, StageLines
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.scorecard.parser import ConfigError, load_config
from health_pipeline.settings import DEFAULT_CONFIG_PATH
from health_pipeline_tests.conftest import Pipeline
from health_pipeline_tests.postgres_server import free_port

SPEC = SampleSpec(accounts=12, days=60, seed=11)
FIRST, LAST = dt.date(2026, 6, 1), dt.date(2026, 7, 30)
SEND_PAST = {SEND_PAST_TAG: "true"}
SLACK_ENV = "HEALTH_TEST_SLACK_WEBHOOK"


class Webhook:
    """A local stand-in for a Slack incoming webhook: records each POST's body, and answers it as
    `answer` says (a status and a body; Slack's own answer to a message it takes is 200 "ok")."""

    def __init__(self, delay: float = 0.0, port: int = 0, answer=lambda body: (200, b"ok")):
        self.bodies = bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the http.server API)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay)
                bodies.append(body)
                status, text = answer(body)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T/B/X"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """A local SMTP server that keeps what it receives. It refuses the recipients in `refuse` as a
    server refuses an unknown mailbox (550); with `refuse_logins`, it asks for a login and refuses
    every one, quoting it back in its reply, as a careless server might."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's API)
        if address in self.refuse:
            self.refused.append(address)
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's API)
        self.received.append(envelope)
        return "250 OK"

    def __init__(self, refuse: tuple[str, ...] = (), refuse_logins: bool = False):
        self.received, self.refused, self.refuse = [], [], refuse
        login = {"authenticator": refuse_quoting_the_login, "auth_require_tls": False} if refuse_logins else {}
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port(), **login)
        self.controller.start()

    @property
    def port(self) -> int:
        return self.controller.port

    def messages(self):
        return [email.message_from_bytes(e.content, policy=policy.default) for e in self.received]

    def close(self):
        self.controller.stop()


def refuse_quoting_the_login(server, session, envelope, mechanism, login):
    return AuthResult(success=False, handled=False,
                      message=f"535 5.7.8 {login.login.decode()}:{login.password.decode()} is not a valid login")


@pytest.fixture
def servers(monkeypatch):
    webhook, mailbox = Webhook(), Mailbox()
    monkeypatch.setenv(SLACK_ENV, webhook.url)
    yield webhook, mailbox
    webhook.close()
    mailbox.close()


def config_with_alerts(tmp_path: Path, smtp_port: int | None, owners: dict | None = None, **rules) -> Path:
    """The shipped scorecard with an alerts block: Slack and email, unless smtp_port is None (no sinks)."""
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    sinks = {
        "slack": {"webhook_url_env": SLACK_ENV},
        "email": {"host": "127.0.0.1", "port": smtp_port, "from": "health@example.test",
                  "owners": owners or {"Ana Ruiz": "ana@example.test"}, "default_to": "cs-team@example.test"},
    }
    raw["alerts"] = {**rules, **(sinks if smtp_port else {})}
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def alerting_pipeline(tmp_path: Path, smtp_port: int, **rules) -> Pipeline:
    pipeline = Pipeline(tmp_path, settings=load_config(config_with_alerts(tmp_path, smtp_port, **rules)))
    generate_sample(pipeline.raw_dir, SPEC)
    return pipeline


def deliveries(pipeline: Pipeline):
    return pipeline.query("SELECT sink, status, count(*) AS n FROM export.alert_deliveries GROUP BY ALL ORDER BY ALL")


def expected_messages(pipeline: Pipeline, corrected: tuple[str, str] = ("", "")):
    """The messages export.alerts makes, one per owner and day, with the `corrected` account's
    (id, owner) alerts addressed to its new owner."""
    rows = pipeline.query("""
        SELECT * FROM (SELECT * REPLACE (CASE WHEN account_id = $account THEN $owner ELSE owner END AS owner)
                       FROM export.alerts)
        ORDER BY owner NULLS LAST, snapshot_date, list_position(['healthy', 'neutral', 'at_risk'], health_band) DESC,
                 health_score, account_id,
                 list_position(['band_down', 'score_drop', 'onboarding_red', 'power_contact_quiet'], kind)
    """, {"account": corrected[0], "owner": corrected[1]})
    rows["snapshot_date"] = rows["snapshot_date"].dt.date
    return messages(rows.astype(object).where(rows.notna(), None).to_dict("records"))


@pytest.mark.slow
def test_each_owner_gets_one_message_a_day_once(tmp_path, servers):
    webhook, mailbox = servers
    pipeline = alerting_pipeline(tmp_path, mailbox.port)
    pipeline.materialize(FIRST, LAST, tags=SEND_PAST)
    expected = expected_messages(pipeline)
    assert len(expected) > 3 and len({m.owner for m in expected}) > 1  # the sample's declines alert several CSMs
    assert [json.loads(body) for body in webhook.bodies] == [m.slack() for m in expected]
    assert webhook.bodies[0] == json.dumps(expected[0].slack()).encode()  # byte for byte
    mails = mailbox.messages()
    assert [m["Subject"] for m in mails] == [m.subject for m in expected]
    assert [m["To"] for m in mails] == ["ana@example.test" if m.owner == "Ana Ruiz" else "cs-team@example.test"
                                        for m in expected]
    first = mails[0]
    # SMTP carries lines ending in CRLF.
    assert first.get_body(("plain",)).get_content().replace("\r\n", "\n") == expected[0].text()
    assert first.get_body(("html",)).get_content().replace("\r\n", "\n").strip() == expected[0].html()
    sent = deliveries(pipeline)
    assert set(sent.status) == {"sent"}

    # A rerun, and a later run over the same days, send nothing again.
    pipeline.materialize(FIRST, LAST, tags=SEND_PAST)
    pipeline.materialize(LAST - dt.timedelta(days=3), LAST, tags=SEND_PAST)
    assert len(webhook.bodies) == len(expected) and len(mailbox.received) == len(expected)
    assert deliveries(pipeline).equals(sent)


@pytest.mark.slow
def test_a_backfill_of_past_days_sends_nothing_unless_asked(tmp_path, servers):
    webhook, mailbox = servers
    pipeline = alerting_pipeline(tmp_path, mailbox.port)
    pipeline.materialize(FIRST, LAST)  # the sample's days are months before today
    assert webhook.bodies == [] and mailbox.received == []
    assert set(deliveries(pipeline).status) == {"past"}
    pipeline.materialize(LAST, LAST, tags=SEND_PAST)  # recorded already: --send-past does not resend the past
    assert webhook.bodies == [] and mailbox.received == []


@pytest.mark.slow
def test_a_sink_that_is_down_keeps_its_alerts_pending_until_the_next_run_to_the_current_owner(tmp_path, monkeypatch):
    mailbox = Mailbox()
    port = free_port()
    monkeypatch.setenv(SLACK_ENV, f"http://127.0.0.1:{port}/services/T/B/X")  # nothing listens there yet
    pipeline = alerting_pipeline(tmp_path, mailbox.port)
    try:
        result = pipeline.run(FIRST, LAST, tags=SEND_PAST)
        assert result.success  # the local outputs stand; the sink's failure is reported, not fatal
        # The run's delivery counts are on its last day's record.
        meta = next(m.materialization.metadata for m in result.get_asset_materialization_events()
                    if m.asset_key.to_user_string() == "alerts" and m.partition == LAST.isoformat())
        statuses = dict(zip(*deliveries(pipeline)[["sink", "status"]].T.values))
        assert statuses == {"slack": "pending", "email": "sent"}
        alerts = len(pipeline.query("SELECT * FROM export.alerts"))
        assert (meta["slack_pending"].value, meta["slack_sent"].value, meta["email_sent"].value) == (alerts, 0, alerts)
        assert stage_line(result) == f"✓ alerts in … s: {alerts} alerts; slack 0 sent, {alerts} pending; " \
                                     f"email {alerts} sent"
        errors = pipeline.query("SELECT owner, snapshot_date, last_error FROM export.alert_deliveries "
                                "WHERE sink = 'slack'")
        for owner, day, error in errors.itertuples(index=False):  # each names its message's owner and day
            assert error.startswith(f"{owner or '(no owner)'} on {day.date()}: Slack webhook: ")
            assert error.endswith("Connection refused")

        # The accounts export corrects an account's owner before the next run: its alerts not sent
        # yet go to the new owner; those sent, and the alerts themselves, keep the owner they had.
        account, owner = pipeline.query("SELECT account_id, owner FROM export.alerts ORDER BY ALL LIMIT 1").iloc[0]
        accounts = pd.read_parquet(pipeline.raw_dir / "accounts.parquet")
        accounts.loc[accounts.account_id == account, "owner"] = "Zoe Fixed"
        accounts.to_parquet(pipeline.raw_dir / "accounts.parquet", index=False)
        webhook = Webhook(port=port)
        try:
            pipeline.materialize(LAST, LAST)  # the next daily run sends what was pending, of any day
            assert set(deliveries(pipeline).status) == {"sent"}
            expected = expected_messages(pipeline, corrected=(account, "Zoe Fixed"))
            assert [json.loads(b) for b in webhook.bodies] == [m.slack() for m in expected]
            assert {m.owner for m in expected if account in {a["account_id"] for a in m.alerts}} == {"Zoe Fixed"}
            owners = pipeline.query("SELECT DISTINCT sink, owner FROM export.alert_deliveries WHERE account_id = $a "
                                    "UNION ALL SELECT DISTINCT 'export.alerts', owner FROM export.alerts "
                                    "WHERE account_id = $a ORDER BY ALL", {"a": account})
            assert owners.values.tolist() == [["email", owner], ["export.alerts", owner], ["slack", "Zoe Fixed"]]
        finally:
            webhook.close()
    finally:
        mailbox.close()


@pytest.mark.slow
def test_a_slow_sink_times_out_and_its_alerts_stay_pending(tmp_path, monkeypatch):
    mailbox, webhook = Mailbox(), Webhook(delay=2.0)
    monkeypatch.setenv(SLACK_ENV, webhook.url)
    pipeline = alerting_pipeline(tmp_path, mailbox.port, timeout_seconds=0.2)
    try:
        pipeline.materialize(LAST - dt.timedelta(days=13), LAST, tags=SEND_PAST)
        slack = pipeline.query("SELECT status, last_error FROM export.alert_deliveries WHERE sink = 'slack'")
        assert set(slack.status) == {"pending"}
        assert all("timed out" in error for error in slack.last_error)  # each names its message, then the cause
    finally:
        webhook.close()
        mailbox.close()


@pytest.mark.slow
def test_alerts_fire_on_the_day_their_condition_starts(tmp_path, servers):
    _, mailbox = servers
    pipeline = alerting_pipeline(tmp_path, mailbox.port, score_drop_points=10)
    pipeline.materialize(FIRST, LAST)
    alerts = pipeline.query("SELECT account_id, snapshot_date, kind FROM export.alerts")
    scores = pipeline.query("""
        SELECT account_id, snapshot_date, score_delta_7d, activation_status, in_onboarding,
               lag(score_delta_7d) OVER w AS delta_before, lag(activation_status) OVER w AS activation_before,
               lag(snapshot_date) OVER w AS day_before
        FROM export.account_health WINDOW w AS (PARTITION BY account_id ORDER BY snapshot_date)
    """)
    fired = set(alerts.itertuples(index=False, name=None))
    for row in scores.itertuples(index=False):
        consecutive = row.day_before is not None and (row.snapshot_date - row.day_before).days == 1
        drop = row.score_delta_7d is not None and row.score_delta_7d <= -10 and not (
            consecutive and row.delta_before is not None and row.delta_before <= -10)
        red = bool(row.in_onboarding) and row.activation_status == "red" and not (
            consecutive and row.activation_before == "red")
        assert ((row.account_id, row.snapshot_date, "score_drop") in fired) == drop, row
        assert ((row.account_id, row.snapshot_date, "onboarding_red") in fired) == red, row
    moves = pipeline.query("SELECT account_id, snapshot_date FROM export.band_changes WHERE direction = 'worse'")
    assert {(a, d, "band_down") for a, d in moves.itertuples(index=False)} == {
        key for key in fired if key[2] == "band_down"}
    assert {key[2] for key in fired} >= {"band_down", "score_drop"}


def settled_band_downs(days: list[tuple[dt.date, str]], settle: int) -> list[dt.date]:
    """The rule by hand: a band counts from the day it has held `settle` consecutive days; an alert
    is a day whose counted band is worse than the day before's."""
    order = ["healthy", "neutral", "at_risk"]
    counted, alerts = {}, []
    for i, (day, band) in enumerate(days):
        run = days[max(0, i - settle + 1):i + 1]
        settled = len(run) == settle and all(b == band for _, b in run) and \
            (run[-1][0] - run[0][0]).days == settle - 1
        counted[day] = band if settled else counted.get(days[i - 1][0]) if i else None
        before = counted.get(day - dt.timedelta(days=1))
        if before and counted[day] and order.index(counted[day]) > order.index(before):
            alerts.append(day)
    return alerts


@pytest.mark.slow
def test_a_band_that_flaps_alerts_only_once_the_new_band_has_held(tmp_path, servers):
    _, mailbox = servers
    pipeline = alerting_pipeline(tmp_path, mailbox.port, min_days_in_new_band=3)
    pipeline.materialize(FIRST, LAST)
    flapper, moves = pipeline.query("""
        SELECT account_id, count(*) FILTER (WHERE direction = 'worse') AS worse FROM export.band_changes
        GROUP BY ALL ORDER BY count(*) DESC, account_id LIMIT 1
    """).iloc[0]
    days = pipeline.query("SELECT snapshot_date, health_band FROM export.account_health WHERE account_id = $a "
                          "ORDER BY snapshot_date", {"a": flapper})
    days = [(d.date(), b) for d, b in days.itertuples(index=False)]
    alerted = pipeline.query("SELECT snapshot_date FROM export.alerts WHERE account_id = $a AND kind = 'band_down' "
                             "ORDER BY 1", {"a": flapper}).snapshot_date.dt.date.tolist()
    assert alerted == settled_band_downs(days, 3)
    assert len(alerted) < moves  # flapping at a cut-off no longer alerts on every move down
    # With one day, the rule is every move down, exactly as export.band_changes has them.
    assert settled_band_downs(days, 1) == sorted(pipeline.query(
        "SELECT snapshot_date FROM export.band_changes WHERE account_id = $a AND direction = 'worse'",
        {"a": flapper}).snapshot_date.dt.date)


@pytest.mark.parametrize("sink, field", [
    ({"slack": {"webhook_url_env": "https://hooks.slack.com/services/T/B/X"}}, "alerts.slack.webhook_url_env"),
    ({"email": {"host": "smtp.example.test", "from": "a@example.test", "default_to": "b@example.test",
                "password_env": "hunter2"}}, "alerts.email.password_env"),
])
def test_a_secret_written_in_the_file_is_refused(tmp_path, sink, field):
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["alerts"] = sink
    path = tmp_path / "secret.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.field == field and "must name an environment variable" in error.value.reason


# --- one message at a time: the alerts stage alone, on a warehouse that holds what it reads -------

DAY = dt.date(2026, 7, 30)


def crafted_pipeline(tmp_path: Path, smtp_port: int | None, accounts: dict[str, tuple[str, str]],
                     owners: dict | None = None, **rules) -> Pipeline:
    """A warehouse with only the tables the alerts stage reads, where each account (id: (owner,
    name)) has a score 20 points lower than a week before on DAY: one score_drop alert each."""
    pipeline = Pipeline(tmp_path, settings=load_config(config_with_alerts(tmp_path, smtp_port, owners, **rules)))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        conn.execute("""
            CREATE SCHEMA export; CREATE SCHEMA raw;
            CREATE TABLE raw.accounts (account_id VARCHAR, owner VARCHAR);
            CREATE TABLE raw.contact_history (user_id VARCHAR, role VARCHAR, valid_from DATE, valid_to DATE);
            CREATE TABLE export.contact_usage (account_id VARCHAR, snapshot_date DATE, user_id VARCHAR,
                                               identity VARCHAR, last_seen_at TIMESTAMP);
            CREATE TABLE export.account_health (
                account_id VARCHAR, snapshot_date DATE, owner VARCHAR, account_name VARCHAR, health_score DOUBLE,
                health_band VARCHAR, top_drag VARCHAR, score_reason VARCHAR, score_delta_7d DOUBLE,
                activation_status VARCHAR, in_onboarding BOOLEAN, crm_account_id VARCHAR, band_source VARCHAR);
        """)
        explanations(conn, pipeline.settings)
        conn.executemany("INSERT INTO raw.accounts VALUES (?, ?)",
                         [[account, owner] for account, (owner, _) in accounts.items()])
        conn.executemany("INSERT INTO export.account_health BY NAME SELECT ? AS account_id, ? AS snapshot_date, "
                         "? AS owner, ? AS account_name, 30.0 AS health_score, 'at_risk' AS health_band, "
                         "'usage' AS top_drag, 'usage fell' AS score_reason, -20.0 AS score_delta_7d, "
                         "false AS in_onboarding, 'score' AS band_source",
                         [[account, DAY, owner, name] for account, (owner, name) in accounts.items()])
    return pipeline


def explanations(conn: duckdb.DuckDBPyConnection, config) -> None:
    """The sync table's columns that say what changed: each component's value and points, each
    activation colour."""
    columns = [f"{c}_{suffix} DOUBLE" for c in config.components for suffix in ("value", "points", "points_possible")]
    columns += [f"activation_{m.name} VARCHAR" for m in config.onboarding.measures]
    for column in columns:
        conn.execute(f"ALTER TABLE export.account_health ADD COLUMN {column}")


def run_alerts(pipeline: Pipeline):
    return pipeline.materialize(DAY, DAY, selection=["alerts"], tags=SEND_PAST)


def alerts_metadata(result) -> dict:
    [metadata] = [m.metadata for m in result.asset_materializations_for_node("alerts")]
    return {key: value.value for key, value in metadata.items()}


def ledger(pipeline: Pipeline) -> list[tuple]:
    with duckdb.connect(str(pipeline.root / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute("SELECT sink, account_id, owner, status, attempts, last_error "
                            "FROM export.alert_deliveries ORDER BY sink, account_id").fetchall()


def stage_line(result) -> str:
    """The line the CLI prints for the alerts stage: the run's events, replayed through the
    progress logger's handler (its time made '…', the one figure that varies)."""
    out = io.StringIO()
    handler = StageLines(ConsoleLines(out))
    for event in result.all_events:
        handler.emit(logging.makeLogRecord({"dagster_meta": {"step_key": event.step_key, "dagster_event": event}}))
    [line] = [line for line in out.getvalue().splitlines() if line.startswith("✓ alerts ")]
    return re.sub(r" in \d+\.\d s: ", " in … s: ", line)


def test_a_message_a_sink_refuses_for_good_fails_alone_names_its_owner_and_day_and_stops(tmp_path, monkeypatch):
    """Three owners on one day. Bo's name holds a line break, which once failed the whole step
    with 'Header values may not contain linefeed': it is cleaned, and Bo's alert delivered. The
    mail server refuses Cy's address and the webhook Cy's message (HTTP 400 with Slack's reason):
    Cy's alerts are pending after the first try and failed after the second (max_attempts: 2),
    and a third run does not try them again. Ana's alerts go out whatever happens to the others."""
    webhook = Webhook(answer=lambda body: (400, f"invalid_blocks (posted to {webhook.url})".encode())
                      if b"Cy Refused" in body else (200, b"ok"))
    mailbox = Mailbox(refuse=("cy@example.test",))
    monkeypatch.setenv(SLACK_ENV, webhook.url)
    accounts = {"A1": ("Ana Ruiz", "Acme"), "B1": ("Bo\r\nLee", "Bolt"), "C1": ("Cy Refused", "Crane")}
    owners = {"Ana Ruiz": "ana@example.test", "Cy Refused": "cy@example.test"}
    pipeline = crafted_pipeline(tmp_path, mailbox.port, accounts, owners=owners, max_attempts=2)
    smtp = f"SMTP 127.0.0.1:{mailbox.port}"
    try:
        first = run_alerts(pipeline)
        assert [(m["To"], m["Subject"]) for m in mailbox.messages()] == [
            ("ana@example.test", "Health alerts for Ana Ruiz on 2026-07-30: 1 account"),
            ("cs-team@example.test", "Health alerts for Bo Lee on 2026-07-30: 1 account")]
        assert [json.loads(body)["blocks"][0]["text"]["text"] for body in webhook.bodies] == [
            f"Health alerts for {owner} on 2026-07-30: 1 account" for owner in ("Ana Ruiz", "Bo Lee", "Cy Refused")]
        assert ledger(pipeline) == [
            ("email", "A1", "Ana Ruiz", "sent", 1, None),
            ("email", "B1", "Bo\r\nLee", "sent", 1, None),
            ("email", "C1", "Cy Refused", "pending", 1,
             f"Cy Refused on 2026-07-30: {smtp} refused cy@example.test: 550 5.1.1 mailbox unavailable"),
            ("slack", "A1", "Ana Ruiz", "sent", 1, None),
            ("slack", "B1", "Bo\r\nLee", "sent", 1, None),
            # Slack's reason is kept; the webhook's URL, a secret, is not.
            ("slack", "C1", "Cy Refused", "pending", 1,
             "Cy Refused on 2026-07-30: Slack webhook answered HTTP 400: invalid_blocks (posted to ***)"),
        ]
        assert {k: v for k, v in alerts_metadata(first).items() if k.startswith(("slack_", "email_"))} == {
            "slack_messages": 2, "slack_sent": 2, "slack_pending": 1, "slack_failed": 0,
            "email_messages": 2, "email_sent": 2, "email_pending": 1, "email_failed": 0}
        assert stage_line(first) == "✓ alerts in … s: 3 alerts; slack 2 sent, 1 pending; email 2 sent, 1 pending"

        second = run_alerts(pipeline)
        assert [row[3:5] for row in ledger(pipeline) if row[1] == "C1"] == [("failed", 2), ("failed", 2)]
        assert stage_line(second) == "✓ alerts in … s: 3 alerts; slack 0 sent, 1 failed; email 0 sent, 1 failed"

        third = run_alerts(pipeline)
        assert len(webhook.bodies) == 4 and mailbox.refused == ["cy@example.test"] * 2 and len(mailbox.received) == 2
        assert [row[3:5] for row in ledger(pipeline) if row[1] == "C1"] == [("failed", 2), ("failed", 2)]
        assert stage_line(third) == "✓ alerts in … s: 3 alerts; slack 0 sent; email 0 sent"
    finally:
        webhook.close()
        mailbox.close()


def slack_limits(body: bytes) -> tuple[int, bytes]:
    """Slack's answer to a message: 400 invalid_blocks past its documented limits, else 200 ok."""
    blocks = json.loads(body)["blocks"]
    within = len(blocks) <= 50 and all(
        len(b["text"]["text"]) <= (150 if b["type"] == "header" else 3000) for b in blocks)
    return (200, b"ok") if within else (400, b"invalid_blocks")


def test_an_owner_with_more_alerts_than_a_slack_message_holds_gets_them_in_parts(tmp_path, monkeypatch):
    """120 alerts for one owner: 49 sections and a header fill Slack's 50 blocks, so three parts
    of 49, 49 and 22 alerts, each within Slack's limits; a line longer than a section's 3,000
    characters is cut with an ellipsis. Each part is marked by its own answer: the part the
    webhook answers 500 to stays pending (however many tries max_attempts allows, as a 5xx may
    pass) and the next run sends its alerts, and only those."""
    # 3,766 characters, 6,266 once escaped (&amp; &lt; &gt;): 16 + 25 per repeat.
    long_name = "Harlow Brothers " + "Smith & <Sons> " * 250
    accounts = {f"A{n:03}": ("Ana Ruiz", long_name if n == 0 else f"Account {n}") for n in range(120)}
    failing = {"part": b"(part 2 of 3)"}
    webhook = Webhook(answer=lambda body: (500, b"internal_error") if failing["part"] in body else slack_limits(body))
    mailbox = Mailbox()
    monkeypatch.setenv(SLACK_ENV, webhook.url)
    pipeline = crafted_pipeline(tmp_path, mailbox.port, accounts, max_attempts=1)
    try:
        first = run_alerts(pipeline)
        bodies = [json.loads(body) for body in webhook.bodies]
        assert [b["blocks"][0]["text"]["text"] for b in bodies] == [
            "Health alerts for Ana Ruiz on 2026-07-30 (part 1 of 3): 49 accounts",
            "Health alerts for Ana Ruiz on 2026-07-30 (part 2 of 3): 49 accounts",
            "Health alerts for Ana Ruiz on 2026-07-30 (part 3 of 3): 22 accounts"]
        assert [slack_limits(body) for body in webhook.bodies] == [(200, b"ok")] * 3
        sections = [block["text"]["text"] for b in bodies for block in b["blocks"][1:]]
        assert [re.search(r"\((A\d{3})\): score fell", text)[1] for text in sections[1:]] == sorted(accounts)[1:]
        # Cut after 2,999 characters, 8 into the 120th repeat, inside "&amp;": the broken escape goes too.
        assert sections[0] == "Harlow Brothers " + "Smith &amp; &lt;Sons&gt; " * 119 + "Smith …"
        statuses = pipeline.query("SELECT account_id, status, attempts, last_error FROM export.alert_deliveries "
                                  "WHERE sink = 'slack' ORDER BY account_id")
        pending = statuses[statuses.status == "pending"]
        assert pending.account_id.tolist() == sorted(accounts)[49:98] and set(pending.attempts) == {1}
        assert set(pending.last_error) == {
            "Ana Ruiz on 2026-07-30 (part 2 of 3): Slack webhook answered HTTP 500: internal_error"}
        assert set(statuses[statuses.status != "pending"].status) == {"sent"}
        metadata = alerts_metadata(first)
        assert (metadata["slack_messages"], metadata["slack_sent"], metadata["slack_pending"]) == (2, 71, 49)

        failing["part"] = b"no part fails now"
        run_alerts(pipeline)
        [retried] = [json.loads(body) for body in webhook.bodies[3:]]
        assert retried["blocks"][0]["text"]["text"] == "Health alerts for Ana Ruiz on 2026-07-30: 49 accounts"
        assert len(retried["blocks"]) == 50
        assert set(pipeline.query("SELECT status FROM export.alert_deliveries").status) == {"sent"}
    finally:
        webhook.close()
        mailbox.close()


def test_without_sinks_the_stage_line_says_so(tmp_path):
    pipeline = crafted_pipeline(tmp_path, None, {"A1": ("Ana Ruiz", "Acme"), "B1": ("Bo Lee", "Bolt")},
                                score_drop_points=15)
    assert stage_line(run_alerts(pipeline)) == "✓ alerts in … s: 2 alerts; no sinks configured"


def test_a_ledger_from_before_attempts_were_counted_keeps_its_rows(tmp_path, servers):
    _, mailbox = servers
    pipeline = crafted_pipeline(tmp_path, mailbox.port, {"A1": ("Ana Ruiz", "Acme")})
    sent_at = dt.datetime(2026, 7, 2, 6, 0)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:  # the ledger as deployed warehouses hold it
        conn.execute("""
            CREATE TABLE export.alert_deliveries (
                account_id VARCHAR, snapshot_date DATE, kind VARCHAR, sink VARCHAR, owner VARCHAR, status VARCHAR,
                recorded_at TIMESTAMP, sent_at TIMESTAMP, last_error VARCHAR);
            INSERT INTO export.alert_deliveries VALUES
                ('A0', '2026-07-01', 'band_down', 'email', 'Ana Ruiz', 'sent', $at, $at, NULL);
        """, {"at": sent_at})
    run_alerts(pipeline)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        rows = conn.execute("SELECT account_id, sink, status, sent_at = $at, attempts FROM export.alert_deliveries "
                            "ORDER BY account_id, sink", {"at": sent_at}).fetchall()
    assert rows == [("A0", "email", "sent", True, 0), ("A1", "email", "sent", False, 1),
                    ("A1", "slack", "sent", False, 1)]


@pytest.mark.parametrize("value, error", [
    (0, "0 is not a whole number of tries from 1 to 100"),
    (2.5, "2.5 is not a whole number of tries from 1 to 100"),
    (True, "True is not a whole number of tries from 1 to 100"),
    (101, "101 is not a whole number of tries from 1 to 100"),
    (5, None), (None, None)])
def test_max_attempts_is_a_whole_number_of_tries_and_defaults_to_three(tmp_path, value, error):
    rules = {} if value is None else {"max_attempts": value}
    path = config_with_alerts(tmp_path, 25, **rules)
    if error:
        with pytest.raises(ConfigError) as raised:
            load_config(path)
        assert (raised.value.field, raised.value.reason) == ("alerts.max_attempts", error)
    else:
        assert load_config(path).alerts.max_attempts == (3 if value is None else value)


@settings(max_examples=150, deadline=None)
@given(owner=st.text(), names=st.lists(st.text(), min_size=1, max_size=120))
def test_any_owner_and_names_make_one_line_headers_and_slack_parts_within_its_limits(owner, names):
    """Whatever the data holds (line breaks, NUL, other control characters, any length), an
    email's headers are the ones set, each one line, and each Slack part is one Slack takes;
    the parts carry every alert once, in order."""
    rows = [{"account_id": f"A{n:03}", "snapshot_date": DAY, "kind": "score_drop", "owner": owner,
             "account_name": name, "detail": "score fell 20.0 points in 7 days", "health_band": "at_risk",
             "health_score": 30.0, "top_drag": None, "score_reason": name} for n, name in enumerate(names)]
    parts = messages(rows, SLACK_ACCOUNTS_PER_MESSAGE)
    assert [alert for part in parts for alert in part.alerts] == rows
    assert [(part.part, part.parts) for part in parts] == [(n, len(parts)) for n in range(1, len(parts) + 1)]
    for part in parts:
        assert slack_limits(json.dumps(part.slack()).encode()) == (200, b"ok")
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", part.subject + "".join(part.lines()))
        mail = EmailMessage()
        mail["Subject"], mail["To"] = part.subject, "ana@example.test"
        parsed = email.message_from_bytes(mail.as_bytes(), policy=policy.default)
        assert parsed.keys() == ["Subject", "To"]


def test_an_account_is_one_sentence_saying_what_changed_with_links_to_its_page_and_crm_record(
        tmp_path, servers, monkeypatch):
    """Two alerts of one account on one day (its band moved down and its score fell) are one
    sentence: what happened, the score now, what changed since the day before (the components
    whose points moved, largest first, with their values), then its report page and CRM record."""
    webhook, mailbox = servers
    monkeypatch.setenv("HEALTH_REPORT_BASE_URL", "https://reports.example.test/health/")
    monkeypatch.setenv("HEALTH_CRM_URL_TEMPLATE", "https://acme.my.salesforce.com/lightning/{crm_account_id}/view")
    pipeline = crafted_pipeline(tmp_path, mailbox.port, {"A1": ("Ana Ruiz", "Acme")})
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        conn.execute("""
            UPDATE export.account_health SET crm_account_id = '001 A&B', usage_level_value = 20,
                usage_level_points = 1, usage_level_points_possible = 4, breadth_value = 0.3, breadth_points = 2,
                breadth_points_possible = 4, feature_depth_value = 2, feature_depth_points = 4,
                feature_depth_points_possible = 4;
            INSERT INTO export.account_health BY NAME
            SELECT * REPLACE (snapshot_date - 1 AS snapshot_date, 50.0 AS health_score, 'neutral' AS health_band,
                              NULL AS score_delta_7d, 700 AS usage_level_value, 4 AS usage_level_points,
                              0.45 AS breadth_value, 3 AS breadth_points)
            FROM export.account_health;
        """)
    run_alerts(pipeline)
    sentence = ("Acme (A1): band moved down, neutral → at risk and score fell 20.0 points in 7 days; now at risk at "
                "30.0/100; since yesterday: usage_level 4 → 1 of 4 points (usage_28d 700 → 20); breadth 3 → 2 of 4 "
                "points (breadth_28d 0.45 → 0.3).")
    page = "https://reports.example.test/health/2026-07-30/accounts/A1.html"
    crm = "https://acme.my.salesforce.com/lightning/001%20A%26B/view"
    [mail] = mailbox.messages()
    assert mail.get_body(("plain",)).get_content().replace("\r\n", "\n") == (
        f"Health alerts for Ana Ruiz on 2026-07-30: 1 account\n\n- {sentence} report: {page} CRM record: {crm}\n")
    assert f'<li>{sentence} <a href="{page}">report</a> <a href="{crm}">CRM record</a></li>' in \
        mail.get_body(("html",)).get_content()
    [body] = [json.loads(body) for body in webhook.bodies]
    assert [block["text"]["text"] for block in body["blocks"][1:]] == [f"{sentence} <{page}|report> <{crm}|CRM record>"]
    assert pipeline.query("SELECT kind FROM export.alerts ORDER BY kind").kind.tolist() == ["band_down", "score_drop"]
