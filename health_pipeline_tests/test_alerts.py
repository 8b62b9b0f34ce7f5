"""alerts against real local servers: a Slack webhook stand-in (an HTTP server on 127.0.0.1) and
an SMTP server (aiosmtpd on 127.0.0.1). What is sent, once; what is not sent for past days; a
sink that is down or slow; the rules; and secrets that must not be in the file."""

from __future__ import annotations

import datetime as dt
import email
import json
import threading
import time
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from health_pipeline.assets.alerts.asset import SEND_PAST_TAG
from health_pipeline.assets.alerts.messages import messages
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
    """A local stand-in for a Slack incoming webhook: records each POST's body. With an error
    `status`, it answers with the URL it was called at in its reason and its body, as a careless
    server or proxy might."""

    def __init__(self, delay: float = 0.0, port: int = 0, status: int = 200):
        self.bodies = bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the http.server API)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay)
                bodies.append(body)
                called = f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"
                self.send_response(status, None if status == 200 else f"no webhook at {called}")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else f"no webhook at {called}".encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T/B/X"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """A local SMTP server that keeps what it receives. With `refuse_logins`, it asks for a login
    and refuses every one, quoting it back in its reply, as a careless server might."""

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's API)
        self.received.append(envelope)
        return "250 OK"

    def __init__(self, refuse_logins: bool = False):
        self.received = []
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


def config_with_alerts(tmp_path: Path, smtp_port: int, **rules) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["alerts"] = {
        **rules,
        "slack": {"webhook_url_env": SLACK_ENV},
        "email": {"host": "127.0.0.1", "port": smtp_port, "from": "health@example.test",
                  "owners": {"Ana Ruiz": "ana@example.test"}, "default_to": "cs-team@example.test"},
    }
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def alerting_pipeline(tmp_path: Path, smtp_port: int, **rules) -> Pipeline:
    pipeline = Pipeline(tmp_path, settings=load_config(config_with_alerts(tmp_path, smtp_port, **rules)))
    generate_sample(pipeline.raw_dir, SPEC)
    return pipeline


def deliveries(pipeline: Pipeline):
    return pipeline.query("SELECT sink, status, count(*) AS n FROM export.alert_deliveries GROUP BY ALL ORDER BY ALL")


def expected_messages(pipeline: Pipeline):
    rows = pipeline.query("""
        SELECT * FROM export.alerts
        ORDER BY owner NULLS LAST, snapshot_date, list_position(['healthy', 'neutral', 'at_risk'], health_band) DESC,
                 health_score, account_id,
                 list_position(['band_down', 'score_drop', 'onboarding_red', 'power_contact_quiet'], kind)
    """)
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
def test_a_sink_that_is_down_keeps_its_alerts_pending_until_the_next_run(tmp_path, monkeypatch):
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
        assert meta["slack_pending"].value > 0 and meta["slack_sent"].value == 0
        error = pipeline.query("SELECT DISTINCT last_error FROM export.alert_deliveries WHERE sink = 'slack'")
        assert error.last_error[0].startswith("Slack webhook: ")

        webhook = Webhook(port=port)
        try:
            pipeline.materialize(LAST, LAST)  # the next daily run sends what was pending, of any day
            assert set(deliveries(pipeline).status) == {"sent"}
            assert [json.loads(b) for b in webhook.bodies] == [m.slack() for m in expected_messages(pipeline)]
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
        slack = pipeline.query("SELECT DISTINCT status, last_error FROM export.alert_deliveries WHERE sink = 'slack'")
        assert slack.status.tolist() == ["pending"] and "timed out" in slack.last_error[0]
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
