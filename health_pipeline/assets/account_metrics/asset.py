"""account_metrics: contact metrics rolled up to one row per account per snapshot date."""

import datetime as dt

import dagster as dg
import duckdb

from health_pipeline.assets import daily_asset, materialized, publish_range
from health_pipeline.checks import check_specs
from health_pipeline.contract import event_users_metric
from health_pipeline.partitions import date_range
from health_pipeline.publish import plan_batches
from health_pipeline.raw_input import CLOSED_STATUSES, HIGH_PRIORITIES, PULSE_SENTIMENTS, SIGNAL_TABLES
from health_pipeline.resources import Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sql import SqlFolder, scalar

SQL = SqlFolder(__file__)
# Rolling up a snapshot date joins its contact metrics with the contacts and accounts in force
# that day. A year at scale L (73M contact rows) as one statement filled 55 GB of disk with
# spill under a 2 GB limit; so a batch holds as many dates as half the memory limit fits, at this
# many bytes per contact row: 2.2M rows (15 days of 5,000 accounts) rolled up without spilling
# in 512 MB and spilled in 256 MB.
BYTES_PER_CONTACT_ROW = 200
# Per-account counts that are zero, not null, for an account with no contacts or no activity.
COUNTS = (
    "contacts_total", "active_users_28d", "active_users_prev_28d", "usage_28d", "usage_prev_28d", "sessions_28d",
    "features_adopted_28d", "kpi_users_28d", "usage_90d", "power_contacts_total", "power_contacts_active_28d",
    "contacts_with_session", "contacts_activated_first_session",
)


def batch_plan(conn: duckdb.DuckDBPyConnection, first_day: dt.date, last_day: dt.date) -> dict:
    """How many snapshot dates one statement rolls up (publish.plan_batches), from the contact
    metrics rows of the range's last day."""
    contacts = scalar(conn, "SELECT count(*) FROM core.contact_metrics WHERE snapshot_date = $last_day",
                      {"last_day": last_day})
    return plan_batches(conn, first_day, last_day, contacts * BYTES_PER_CONTACT_ROW,
                        f"each snapshot date rolls up about {contacts:,} contacts")


def account_metrics_sql(config: HealthConfig) -> str:
    zero_filled = (*COUNTS, *(event_users_metric(e) for e in config.tracked_events))
    return SQL.render("account_metrics", config=config, zero_filled=zero_filled)


def account_metrics_params(config: HealthConfig) -> dict:
    """The statement's values besides the range: the configuration's and the signals' enumerations."""
    return {"power_roles": list(config.power_roles), "pulse_days": config.pulse_days,
            "sentiments_worst_first": list(reversed(PULSE_SENTIMENTS)), "high_priorities": list(HIGH_PRIORITIES),
            "closed_statuses": list(CLOSED_STATUSES)}


def build_account_metrics(config: HealthConfig) -> dg.AssetsDefinition:
    @daily_asset(
        name="account_metrics",
        deps=["contact_metrics", "account_history", "contact_history", "outcomes", *SIGNAL_TABLES],
        kinds={"duckdb"},
        code_version=config.metrics_version,
        check_specs=check_specs(config, "account_metrics"),
    )
    def account_metrics(context: dg.AssetExecutionContext, warehouse: Warehouse):
        """One row per account (every account in the accounts snapshot) per snapshot date D.

        The per-account metrics defined in docs/metrics.md: contacts_total, active users
        and usage now and in the previous 28 days with their change, sessions, breadth,
        concentration (top_user_share_28d), feature adoption, KPI users, recency, 90-day
        inactivity, power contacts (by users.role) and those who left, the onboarding activation
        measures (first_session_activated_share, `<event>_users_28d`), Heap's rules as flags,
        license utilisation, and the signals of the optional tables: the CSM's pulse (with
        pulse_sentiment), tickets, NPS and overdue invoices. Accounts with no contacts or no
        activity have zero counts and null ratios.
        """
        first_day, last_day = date_range(context.partition_time_window)
        with warehouse.get_connection() as conn:
            meta = yield from publish_range(
                conn, config, "account_metrics", "core.account_metrics", "snapshot_date", first_day, last_day,
                account_metrics_sql(config),
                {"first_day": first_day, "last_day": last_day, **account_metrics_params(config)},
                batch_plan=batch_plan, windowed=True,
            )
        yield from materialized(context, meta)

    return account_metrics
