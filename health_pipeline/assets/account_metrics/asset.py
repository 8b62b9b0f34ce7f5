"""account_metrics: contact metrics rolled up to one row per account per snapshot date."""

import dagster as dg

from health_pipeline.assets import daily_asset, materialized, publish_range
from health_pipeline.checks import check_specs
from health_pipeline.contract import event_users_metric
from health_pipeline.partitions import date_range
from health_pipeline.resources import Warehouse
from health_pipeline.scorecard.model import HealthConfig
from health_pipeline.sql import SqlFolder

SQL = SqlFolder(__file__)
# Per-account counts that are zero, not null, for an account with no contacts or no activity.
COUNTS = (
    "contacts_total", "active_users_28d", "active_users_prev_28d", "usage_28d", "usage_prev_28d", "sessions_28d",
    "features_adopted_28d", "kpi_users_28d", "usage_90d", "power_contacts_total", "power_contacts_active_28d",
    "contacts_with_session", "contacts_activated_first_session",
)


def account_metrics_sql(config: HealthConfig) -> str:
    zero_filled = (*COUNTS, *(event_users_metric(e) for e in config.tracked_events))
    return SQL.render("account_metrics", config=config, zero_filled=zero_filled)


def build_account_metrics(config: HealthConfig) -> dg.AssetsDefinition:
    @daily_asset(
        name="account_metrics",
        deps=["contact_metrics", "account_history", "contact_history", "outcomes"],
        kinds={"duckdb"},
        code_version=config.metrics_version,
        check_specs=check_specs(config, "account_metrics"),
    )
    def account_metrics(context: dg.AssetExecutionContext, warehouse: Warehouse):
        """One row per account (every account in the accounts snapshot) per snapshot date D.

        The per-account usage metrics defined in docs/metrics.md: contacts_total, active users
        and usage now and in the previous 28 days with their change, sessions, breadth,
        concentration (top_user_share_28d), feature adoption, KPI users, recency, 90-day
        inactivity, power contacts (by users.role), the onboarding activation measures
        (first_session_activated_share, `<event>_users_28d`). Accounts with no contacts or no
        activity have zero counts and null ratios.
        """
        first_day, last_day = date_range(context.partition_time_window)
        with warehouse.get_connection() as conn:
            meta = yield from publish_range(
                conn, config, "account_metrics", "core.account_metrics", "snapshot_date", first_day, last_day,
                account_metrics_sql(config),
                {"first_day": first_day, "last_day": last_day, "power_roles": list(config.power_roles)},
                windowed=True,
            )
        yield from materialized(context, meta)

    return account_metrics
