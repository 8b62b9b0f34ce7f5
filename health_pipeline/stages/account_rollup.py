"""Stage d: roll contact metrics up to one row per account per snapshot date."""


import dagster as dg

from health_pipeline.config import Settings
from health_pipeline.contract import event_users_metric
from health_pipeline.stages import stage_asset
from health_pipeline.stages.contact_metrics import event_metric_column
from health_pipeline.warehouse import Warehouse, date_range, quote, write_range

# Per-account counts that are zero, not null, for an account with no contacts or no activity.
_COUNTS = (
    "contacts_total", "active_users_28d", "active_users_prev_28d", "usage_28d", "usage_prev_28d", "sessions_28d",
    "features_adopted_28d", "kpi_users_28d", "usage_90d", "power_contacts_total", "power_contacts_active_28d",
    "contacts_with_session", "contacts_activated_first_session",
)


def account_metrics_sql(settings: Settings) -> str:
    features_adopted = " + ".join(
        f"(coalesce(sum(m.{quote(event_metric_column(e))}), 0) > 0)::INTEGER" for e in settings.feature_events
    )
    event_users = ",\n".join(
        f"count(*) FILTER (WHERE m.{quote(event_metric_column(e))} > 0) AS {quote(event_users_metric(e))}"
        for e in settings.tracked_events
    )
    zero_filled = ",\n".join(
        f"coalesce(p.{quote(c)}, 0) AS {quote(c)}"
        for c in (*_COUNTS, *(event_users_metric(e) for e in settings.tracked_events))
    )
    event_users_names = ", ".join(quote(event_users_metric(e)) for e in settings.tracked_events)
    return f"""
        WITH snapshot_dates AS (
            SELECT CAST(generate_series AS DATE) AS snapshot_date
            FROM generate_series($first_day::TIMESTAMP, $last_day::TIMESTAMP, INTERVAL 1 DAY)
        ),
        account_contacts AS (
            -- Only contacts whose account_id is a known account roll up.
            SELECT m.*, list_contains($power_roles::VARCHAR[], lower(trim(c.role))) AS is_power_contact
            FROM core.contact_metrics m
            JOIN raw.accounts a ON a.account_id = m.account_id
            JOIN raw.contacts c ON c.user_id = m.user_id
            WHERE m.snapshot_date BETWEEN $first_day AND $last_day
        ),
        per_account AS (
            SELECT m.snapshot_date, m.account_id,
                   count(*) AS contacts_total,
                   count(*) FILTER (WHERE m.usage_28d > 0) AS active_users_28d,
                   count(*) FILTER (WHERE m.usage_prev_28d > 0) AS active_users_prev_28d,
                   CAST(sum(m.usage_28d) AS BIGINT) AS usage_28d,
                   CAST(sum(m.usage_prev_28d) AS BIGINT) AS usage_prev_28d,
                   CAST(sum(m.sessions_28d) AS BIGINT) AS sessions_28d,
                   max(m.usage_28d) AS top_user_usage_28d,
                   {features_adopted} AS features_adopted_28d,
                   count(*) FILTER (WHERE m.kpi_28d > 0) AS kpi_users_28d,
                   max(m.last_usage_date) AS last_usage_date,
                   CAST(sum(m.usage_90d) AS BIGINT) AS usage_90d,
                   count(*) FILTER (WHERE m.is_power_contact) AS power_contacts_total,
                   count(*) FILTER (WHERE m.is_power_contact AND m.usage_28d > 0) AS power_contacts_active_28d,
                   max(m.last_usage_date) FILTER (WHERE m.is_power_contact) AS power_contact_last_usage_date,
                   count(*) FILTER (WHERE m.first_session_date IS NOT NULL) AS contacts_with_session,
                   count(*) FILTER (WHERE m.first_session_activated) AS contacts_activated_first_session,
                   {event_users}
            FROM account_contacts m
            GROUP BY m.snapshot_date, m.account_id
        ),
        every_account_day AS (
            -- Accounts with no contacts or no activity still get a row, with zero counts.
            SELECT d.snapshot_date, a.account_id,
                   p.top_user_usage_28d, p.last_usage_date, p.power_contact_last_usage_date,
                   {zero_filled}
            FROM snapshot_dates d CROSS JOIN raw.accounts a
            LEFT JOIN per_account p ON p.snapshot_date = d.snapshot_date AND p.account_id = a.account_id
        )
        SELECT snapshot_date, account_id, contacts_total,
               active_users_28d, active_users_prev_28d,
               usage_28d, usage_prev_28d,
               (usage_28d - usage_prev_28d) / nullif(usage_prev_28d, 0) AS usage_change_pct,
               (active_users_28d - active_users_prev_28d) / nullif(active_users_prev_28d, 0)
                   AS active_users_change_pct,
               sessions_28d,
               active_users_28d / nullif(contacts_total, 0) AS breadth_28d,
               top_user_usage_28d / nullif(usage_28d, 0) AS top_user_share_28d,
               features_adopted_28d,
               kpi_users_28d,
               CAST(snapshot_date - last_usage_date AS INTEGER) AS days_since_last_active,
               usage_90d = 0 AS is_inactive_90d,
               power_contacts_total,
               power_contacts_active_28d,
               CAST(snapshot_date - power_contact_last_usage_date AS INTEGER) AS days_since_power_contact_active,
               contacts_activated_first_session / nullif(contacts_with_session, 0) AS first_session_activated_share,
               {event_users_names}
        FROM every_account_day
    """


def build_account_metrics(settings: Settings) -> dg.AssetsDefinition:
    @stage_asset(
        name="account_metrics",
        deps=["contact_metrics"],
        kinds={"duckdb"},
        code_version=settings.metrics_version,
    )
    def account_metrics(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
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
            meta = write_range(
                conn, "core.account_metrics", "snapshot_date", first_day, last_day,
                account_metrics_sql(settings),
                {"first_day": first_day, "last_day": last_day, "power_roles": list(settings.power_roles)},
            )
        return dg.MaterializeResult(metadata=meta)

    return account_metrics
