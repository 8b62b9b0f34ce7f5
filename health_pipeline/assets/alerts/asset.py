"""alerts: who is told what when an account turns, sent once.

For the run's days, alerts_due.sql finds the alerts (a band moving down, a 7-day score drop past
the configured points, an onboarding account turning red, a power contact quiet for the
configured days) and they replace those days of export.alerts. Each alert is then recorded once
per configured sink in the ledger export.alert_deliveries, and every pending delivery, of any
day, is sent: one message per owner and day (in parts where Slack's limits require), to Slack
and by email (config `alerts`), addressed to the account's current owner. Each message succeeds
or fails on its own: a sink that fails or times out leaves its alerts pending for the next run;
a message it refuses for a reason that will not change is marked failed after `max_attempts`
tries; nothing is sent twice. Days older than the daily run's reach (yesterday and
HEALTH_LATE_DAYS before it) are recorded as 'past' and not sent, unless the run has the tag
health/send_past=true (`health-pipeline run --send-past`). The run's `deliveries` metadata, which
the CLI prints as the stage's line, counts per sink the alerts sent, still pending and failed.
"""

import datetime as dt
import time
import urllib.parse
from collections import Counter

import dagster as dg
import duckdb

from health_pipeline import settings
from health_pipeline.assets import change_params, daily_asset, materialized
from health_pipeline.assets.morning_report.site import page_names, page_url
from health_pipeline.partitions import date_range
from health_pipeline.publish import write_range
from health_pipeline.redaction import redact
from health_pipeline.resources import Warehouse
from health_pipeline.scorecard.model import ALERT_KINDS, BANDS, HealthConfig
from health_pipeline.sql import SqlFolder

from .messages import Message, messages
from .sinks import ACCOUNTS_PER_MESSAGE, SENDERS, SinkError

SQL = SqlFolder(__file__)
SEND_PAST_TAG = "health/send_past"


def send_from(today: dt.date, send_past: bool) -> dt.date:
    """The first snapshot date whose alerts are still news: the daily run's first day."""
    return dt.date.min if send_past else today - dt.timedelta(days=1 + settings.late_days())


def record_alerts(conn: duckdb.DuckDBPyConnection, config: HealthConfig, first_day: dt.date, last_day: dt.date,
                  today: dt.date, send_past: bool) -> dict:
    """Replace the range's export.alerts and record each new alert in the ledger, per sink."""
    rules = config.alerts
    params = {"first_day": first_day, "last_day": last_day, "score_drop_points": rules.score_drop_points,
              "quiet_days": rules.power_contact_quiet_days, "power_roles": list(config.power_roles),
              "min_days_in_band": rules.min_days_in_new_band, "bands": list(BANDS), **change_params(config)}
    meta = write_range(conn, "export.alerts", "snapshot_date", first_day, last_day,
                       SQL.render("alerts_due", config=config), params)
    SQL.run(conn, "alert_deliveries")
    if rules.sinks:
        SQL.run(conn, "deliveries_recorded", {"sinks": list(rules.sinks), "send_from": send_from(today, send_past),
                                              "recorded_at": dt.datetime.now(dt.UTC).replace(tzinfo=None)})
    return meta


def deliver(conn: duckdb.DuckDBPyConnection, config: HealthConfig, log=None) -> dict[str, Counter]:
    """Send every pending delivery, a message per owner and day and sink, and mark each message's
    alerts by its own outcome. Per sink: the messages sent, and the alerts sent, left pending
    and failed."""
    results: dict[str, Counter] = {}
    for sink in config.alerts.sinks:
        counts = results[sink] = Counter()
        sink_settings = getattr(config.alerts, sink)
        cursor = SQL.run(conn, "pending_messages", {"sink": sink, "bands": list(BANDS), "kinds": list(ALERT_KINDS)})
        columns = [c[0] for c in cursor.description]
        rows = with_links(conn, [dict(zip(columns, row)) for row in cursor.fetchall()])
        for message in messages(rows, ACCOUNTS_PER_MESSAGE.get(sink)):
            try:
                SENDERS[sink](sink_settings, message, config.alerts.timeout_seconds)
            except SinkError as failure:
                error = redact(f"{message.name}: {failure}", sink_settings.secrets)
                statuses = _mark(conn, sink, message, config.alerts.max_attempts, error, failure.permanent)
                if log:
                    log.warning(f"{sink}: {error}; alerts " + ", ".join(f"{s}: {n}" for s, n in statuses.items()))
            else:
                statuses = _mark(conn, sink, message, config.alerts.max_attempts)
                counts["messages"] += 1
            counts.update(statuses)
    return results


def with_links(conn: duckdb.DuckDBPyConnection, alerts: list[dict]) -> list[dict]:
    """The alerts, each with the links its sentence ends with where they are configured: the
    account's page in the morning report of its day (HEALTH_REPORT_BASE_URL; the page's name as that
    day's site names it) and its CRM record (HEALTH_CRM_URL_TEMPLATE, where it has a crm_account_id)."""
    base_url, crm_template = settings.report_base_url(), settings.crm_url_template()
    pages = {}
    if base_url:
        for day in {a["snapshot_date"] for a in alerts}:
            ids = conn.execute("SELECT account_id FROM export.account_health WHERE snapshot_date = $d",
                               {"d": day}).fetchall()
            pages[day] = page_names(account_id for (account_id,) in ids)
    return [{**a,
             "report_url": page_url(base_url, a["snapshot_date"], "accounts", pages[a["snapshot_date"]].get(
                 a["account_id"])) if base_url else None,
             "crm_url": crm_url(crm_template, a["crm_account_id"])} for a in alerts]


def crm_url(template: str, crm_account_id: str | None) -> str | None:
    """The account's record in the CRM: the template with its id, percent-encoded, in place."""
    if not template or not crm_account_id:
        return None
    return template.replace(settings.CRM_ID_PLACEHOLDER, urllib.parse.quote(crm_account_id, safe=""))


def _mark(conn: duckdb.DuckDBPyConnection, sink: str, message: Message, max_attempts: int,
          error: str | None = None, permanent: bool = False) -> Counter:
    """Record one try of `message` on its alerts; how many of them are now sent, pending, failed."""
    cursor = SQL.run(conn, "deliveries_marked", {
        "sink": sink, "keys": [{"a": a, "d": d, "k": k} for a, d, k in message.keys], "owner": message.owner,
        "error": error, "permanent": permanent, "max_attempts": max_attempts,
        "now": dt.datetime.now(dt.UTC).replace(tzinfo=None)})
    return Counter(status for (status,) in cursor.fetchall())


def deliveries_summary(alerts: int, delivered: dict[str, Counter]) -> str:
    """The run in one line: its alerts, then per sink those sent, and any pending or failed."""
    sinks = "; ".join(f"{sink} {counts['sent']:,} sent" + "".join(
        f", {counts[status]:,} {status}" for status in ("pending", "failed") if counts[status])
        for sink, counts in delivered.items())
    return f"{alerts:,} alert{'' if alerts == 1 else 's'}; {sinks or 'no sinks configured'}"


def build_alerts(config: HealthConfig) -> dg.AssetsDefinition:
    @daily_asset(
        name="alerts",
        deps=["sync_export", "band_changes", "contact_usage", "contact_history", "accounts"],
        kinds={"duckdb", "slack", "email"},
    )
    def alerts(context: dg.AssetExecutionContext, warehouse: Warehouse):
        """One row per account, snapshot date and kind of alert (band_down, score_drop,
        onboarding_red, power_contact_quiet) in export.alerts: the owner, the account's score,
        band, top_drag and score_reason, and what happened. export.alert_deliveries is the ledger
        of what was sent where (sent, pending, failed, past). Messages go one per owner and day
        to the configured sinks, addressed to the account's current owner.
        """
        first_day, last_day = date_range(context.partition_time_window)
        send_past = context.run.tags.get(SEND_PAST_TAG) == "true"
        started = time.perf_counter()
        with warehouse.get_connection() as conn:
            meta = record_alerts(conn, config, first_day, last_day, dt.datetime.now(dt.UTC).date(), send_past)
            kinds = dict(conn.execute(
                "SELECT kind, count(*) FROM export.alerts WHERE snapshot_date BETWEEN $f AND $l GROUP BY ALL",
                {"f": first_day, "l": last_day}).fetchall())
            delivered = deliver(conn, config, context.log)
        meta.update({f"alerts_{kind}": dg.MetadataValue.int(kinds.get(kind, 0)) for kind in ALERT_KINDS})
        meta["sinks"] = dg.MetadataValue.text(", ".join(config.alerts.sinks) or "none configured")
        for sink, counts in delivered.items():
            meta.update({f"{sink}_{what}": dg.MetadataValue.int(counts[what])
                         for what in ("messages", "sent", "pending", "failed")})
        meta["deliveries"] = dg.MetadataValue.text(deliveries_summary(sum(kinds.values()), delivered))
        meta["send_seconds"] = dg.MetadataValue.float(round(time.perf_counter() - started, 2))
        yield from materialized(context, meta)

    return alerts
