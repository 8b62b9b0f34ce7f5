"""Secrets never leave: with each secret-bearing setting wrong in the ways people get it wrong, a
real `health-pipeline run` says what is wrong in one line, and neither its output, nor any file of
its Dagster instance (the event log's SQLite storage read as bytes), nor the warehouse (its file
as bytes, and the alert ledger's last_error) holds the secret or a piece of it.

One sample and warehouse serve every case: its stages up to the exports are materialized once,
and each case runs the CLI on the one stage that reads the setting (alerts or postgres_sync),
with a fresh Dagster instance.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import dagster as dg
import duckdb
import psycopg
import pytest
import yaml

from health_pipeline.assets.alerts.messages import Message
from health_pipeline.assets.alerts.sinks import SinkError, secret_problems, send_slack
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline.scorecard.model import Alerts, SlackSink
from health_pipeline.settings import DEFAULT_CONFIG_PATH
from health_pipeline.sql import table_exists
from health_pipeline_tests.conftest import Pipeline
from health_pipeline_tests.postgres_server import USER, free_port, require_binaries, start_server
from health_pipeline_tests.test_alerts import Mailbox, Webhook
from health_pipeline_tests.test_crash_safety import env_for

SPEC = SampleSpec(accounts=4, days=3, seed=5)  # 2026-06-01 .. 06-03: one power_contact_quiet alert
SLACK_ENV, SMTP_USER_ENV, SMTP_PASSWORD_ENV = "HEALTH_TEST_SLACK_WEBHOOK", "HEALTH_TEST_SMTP_USER", \
    "HEALTH_TEST_SMTP_PASSWORD"
POSTGRES_FORM = "HEALTH_SYNC_POSTGRES_URL is not a URL of the form postgresql://user:password@host:port/database"
WEBHOOK_FORM = f"{SLACK_ENV} is not a URL of the form https://hooks.slack.com/services/…"
TOKEN = "xoxbSecretWebhookToken4f9a2c7e"  # a webhook URL's last segment, the part that is the secret
# `health-pipeline run` as it is, its job cut to one stage: the stages before it are in the warehouse.
ONE_STAGE = ("import sys, dagster as dg; from health_pipeline import cli; load = cli._load_job; "
             "cli._load_job = lambda: load().get_subset(asset_selection={dg.AssetKey(sys.argv[1])}); "
             "sys.exit(cli.main(['run', *sys.argv[2:]]))")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A sample, with every stage alerts and postgres_sync read materialized."""
    root = tmp_path_factory.mktemp("secrets")
    generate_sample(root / "raw", SPEC)
    stages = dg.AssetSelection.assets("alerts", "postgres_sync")
    Pipeline(root).materialize(SPEC.start, SPEC.end,
                               selection=(stages.upstream() - stages).required_multi_asset_neighbors())
    return root


@pytest.fixture(scope="module")
def server():
    require_binaries()
    server = start_server()
    yield server
    server.stop()


def scorecard(root: Path, smtp_port: int) -> Path:
    """The default scorecard, its alerts sent to Slack and by email with an SMTP login."""
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["alerts"] = {
        "power_contact_quiet_days": 2, "slack": {"webhook_url_env": SLACK_ENV},
        "email": {"host": "127.0.0.1", "port": smtp_port, "from": "health@example.test",
                  "default_to": "cs-team@example.test", "username_env": SMTP_USER_ENV,
                  "password_env": SMTP_PASSWORD_ENV},
    }
    (path := root / f"alerts_{smtp_port}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_stage(root: Path, home: Path, stage: str, *flags: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", ONE_STAGE, stage, "--start", str(SPEC.start), "--end", str(SPEC.end), "--send-past",
         *flags],
        env=env_for(root, DAGSTER_HOME=str(home), **env), capture_output=True, text=True, timeout=300)


def pieces(secret: str) -> set[str]:
    """The secret, and what a parser may quote of it on its own: percent-decoded, and each part an
    unescaped '@', ':' or '/' splits off (four characters or more, as `redact` masks them)."""
    return {piece for piece in {secret, unquote(secret), *re.split(r"[@:/]", secret)} if len(piece) >= 4}


def ledger_errors(root: Path) -> list[str]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as conn:
        if not table_exists(conn, "export.alert_deliveries"):
            return []
        return [error for (error,) in conn.execute(
            "SELECT DISTINCT last_error FROM export.alert_deliveries WHERE last_error IS NOT NULL").fetchall()]


def assert_kept(result: subprocess.CompletedProcess, root: Path, home: Path, secrets: set[str]) -> None:
    """None of `secrets` in the run's output, the instance's files or the warehouse."""
    places = {"stdout": result.stdout.encode(), "stderr": result.stderr.encode(),
              "export.alert_deliveries.last_error": "\n".join(ledger_errors(root)).encode(),
              **{str(path): path.read_bytes() for path in home.rglob("*") if path.is_file()},
              **{str(path): path.read_bytes() for path in root.glob("warehouse.duckdb*")}}
    leaks = [f"{secret!r} in {place}" for secret in secrets for place, data in places.items()
             if secret.encode() in data]
    assert not leaks, leaks


def event_logs(home: Path) -> list[Path]:
    """The run's event log: the SQLite file where Dagster keeps what the UI shows of it (by run id)."""
    return list((home / "history" / "runs").glob("*-*.db"))


def one_line(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    return line


# --- HEALTH_SYNC_POSTGRES_URL -----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("password, url, problem", [
    ("Quartz-Pigeon-7731", "health:{password}@127.0.0.1:5432/postgres",
     "it has no scheme: it must start with postgresql:// or postgres://"),
    ("Orchid%zzLantern-42", "postgresql://health:{password}@127.0.0.1:5432/postgres",
     "it has a '%' that does not start an escape such as %40: percent-encode special characters"),
    ("Marble@Falcon-913", "postgresql://health:{password}@127.0.0.1:5432/postgres",
     "its user or password holds an unescaped '@': percent-encode it as %40 (and ':' as %3A, '/' as %2F)"),
], ids=["no_scheme", "bad_escape", "unescaped_at"])
def test_a_postgres_url_libpq_cannot_read_is_refused_at_startup_naming_the_variable(root, tmp_path, password, url,
                                                                                    problem):
    result = run_stage(root, tmp_path / "dagster_home", "postgres_sync",
                       HEALTH_SYNC_POSTGRES_URL=url.format(password=password))
    assert one_line(result, 2) == f"{POSTGRES_FORM}: {problem}"
    assert_kept(result, root, tmp_path / "dagster_home", pieces(password))


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["wrong_port", "unreachable_host", "wrong_password", "no_create_privilege"])
def test_a_postgres_server_that_cannot_be_reached_or_refuses_fails_the_sync_in_one_line(root, tmp_path, server,
                                                                                       failure):
    password, port = "Cobalt-Heron-5528", free_port()
    unreachable = "(Is the server running on that host and accepting TCP/IP connections?)"
    url, where, reason = {
        "wrong_port": (server.url(password=password, port=port), f"127.0.0.1:{port}",
                       f"Connection refused {unreachable}"),
        # TCP to a multicast address fails at once, inside this machine: no packet leaves it.
        "unreachable_host": (f"postgresql://{USER}:{password}@224.0.0.1:5432/postgres", "224.0.0.1:5432",
                             f"Network is unreachable {unreachable}"),
        "wrong_password": (server.url(password=password), f"127.0.0.1:{server.port}",
                           f'password authentication failed for user "{USER}"'),
        "no_create_privilege": (server.url(password=password).replace(f"{USER}:", "reader:"), None,
                                "permission denied for database postgres"),
    }[failure]
    if failure == "no_create_privilege":  # a role that may log in, but not create the sync's schema
        with psycopg.connect(server.url(), autocommit=True) as admin:
            admin.execute(f"CREATE ROLE reader LOGIN PASSWORD '{password}'")
    result = run_stage(root, tmp_path / "dagster_home", "postgres_sync", HEALTH_SYNC_POSTGRES_URL=url)
    assert one_line(result, 1) == "postgres_sync failed: " + (
        f"cannot connect to PostgreSQL as {USER}@{where}/postgres (HEALTH_SYNC_POSTGRES_URL): {reason}" if where
        else f"PostgreSQL refused the sync, which was rolled back: {reason}")
    assert event_logs(tmp_path / "dagster_home")
    assert_kept(result, root, tmp_path / "dagster_home", pieces(password))


# --- the alert sinks: the Slack webhook and the SMTP login ---------------------------------------------

@pytest.mark.slow
def test_a_webhook_without_https_is_refused_at_startup_naming_the_variable(root, tmp_path):
    url = f"hooks.slack.com/services/T0AAAA/B0BBBB/{TOKEN}"
    result = run_stage(root, tmp_path / "dagster_home", "alerts", HEALTH_CONFIG=str(scorecard(root, free_port())),
                       **{SLACK_ENV: url})
    assert one_line(result, 2) == f"{WEBHOOK_FORM}: it has no scheme: it must start with https://"
    assert_kept(result, root, tmp_path / "dagster_home", {url, TOKEN})


@pytest.mark.slow
@pytest.mark.parametrize("status, flags", [(404, ()), (500, ("--debug",))])
def test_sinks_whose_servers_quote_the_secret_back_keep_the_alerts_pending_without_it(root, tmp_path, status, flags):
    """Slack answers an error with the webhook's URL in its reason and body; the SMTP server
    refuses the login quoting it; the email is still tried after Slack failed. With --debug,
    Dagster's own log (the warnings included) is printed too."""
    # A careless server or proxy quotes the URL it was called at in its answer.
    webhook = Webhook(answer=lambda body: (status, f"no webhook at {url}".encode()))
    mailbox = Mailbox(refuse_logins=True)
    url, password = f"{webhook.url.rsplit('/', 1)[0]}/{TOKEN}", "Saffron-Kettle-2261"
    try:
        result = run_stage(root, tmp_path / "dagster_home", "alerts", *flags,
                           HEALTH_CONFIG=str(scorecard(root, mailbox.port)),
                           **{SLACK_ENV: url, SMTP_USER_ENV: "alerts-sender", SMTP_PASSWORD_ENV: password})
    finally:
        webhook.close()
        mailbox.close()
    assert result.returncode == 0, result.stdout + result.stderr  # a sink's failure leaves alerts pending
    assert len(webhook.bodies) == 1 and mailbox.received == []
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as conn:
        ledger = dict(conn.execute("SELECT sink, last_error FROM export.alert_deliveries "
                                   "WHERE status = 'pending'").fetchall())
    # Each refusal is permanent, but tried max_attempts times before it is marked failed.
    assert ledger == {
        "slack": f"Emma Stone on 2026-06-03: Slack webhook answered HTTP {status}: no webhook at ***",
        "email": f"Emma Stone on 2026-06-03: SMTP 127.0.0.1:{mailbox.port} answered 535 5.7.8 ***:*** is not a "
                 "valid login",
    }
    if flags:  # the warning the alerts step logs, as Dagster's console log prints it
        assert ("slack: Emma Stone on 2026-06-03: Slack webhook answered HTTP 500: no webhook at ***; "
                "alerts pending: 1") in result.stderr
    assert event_logs(tmp_path / "dagster_home")
    assert_kept(result, root, tmp_path / "dagster_home", {url, TOKEN, *pieces(password)})


@pytest.mark.parametrize("url, problem", [
    (f"hooks.slack.com/services/T0AAAA/B0BBBB/{TOKEN}", "it has no scheme: it must start with https://"),
    (f"http://hooks.slack.com/services/T0AAAA/B0BBBB/{TOKEN}", "its scheme is not https://"),
    (f"https://hooks.slack.com/services/T0AAAA/B0BBBB/{TOKEN}", None),
    (f"http://127.0.0.1:8080/services/T0AAAA/B0BBBB/{TOKEN}", None),  # plain http only to this machine
])
def test_a_webhook_set_wrong_is_named_at_startup_and_fails_its_messages_alone(monkeypatch, url, problem):
    """Where the definitions were built without the startup check (or the variable changed since),
    sending refuses the URL with the same line, so the alerts stay pending and the email sink after
    Slack still runs."""
    monkeypatch.setenv(SLACK_ENV, url)
    sink = SlackSink(SLACK_ENV)
    assert secret_problems(Alerts(slack=sink)) == ([f"{WEBHOOK_FORM}: {problem}"] if problem else [])
    if problem:
        with pytest.raises(SinkError) as refused:
            send_slack(sink, Message("Ana Ruiz", dt.date(2026, 6, 3), ()), timeout=1.0)
        assert str(refused.value) == f"{WEBHOOK_FORM}: {problem}"


def test_an_unset_webhook_is_not_a_startup_problem(monkeypatch):
    monkeypatch.delenv(SLACK_ENV, raising=False)
    assert secret_problems(Alerts(slack=SlackSink(SLACK_ENV))) == []
