"""The column names every asset agrees on: the per-account metrics, with the range of values each can take.

The account rollup produces exactly these columns, the sync table carries them under
these names, and a scorecard may bin any of them. A bin set must cover the metric's
whole range, so a value can never fall outside every bin.
"""

INF = float("inf")

# metric name -> (lowest possible value, highest possible value)
ACCOUNT_METRICS: dict[str, tuple[float, float]] = {
    "contacts_total": (0, INF),
    "active_users_28d": (0, INF),
    "active_users_prev_28d": (0, INF),
    "usage_28d": (0, INF),
    "usage_prev_28d": (0, INF),
    "usage_change_pct": (-1, INF),
    "active_users_change_pct": (-1, INF),
    "sessions_28d": (0, INF),
    "breadth_28d": (0, 1),
    "top_user_share_28d": (0, 1),
    "features_adopted_28d": (0, INF),
    "kpi_users_28d": (0, INF),
    "days_since_last_active": (0, INF),
    "is_inactive_90d": (0, 1),
    "power_contacts_total": (0, INF),
    "power_contacts_active_28d": (0, INF),
    "days_since_power_contact_active": (0, INF),
    "first_session_activated_share": (0, 1),
    # Heap's account-health rules as flags (1 true, 0 false): is_inactive_90d above, and these two.
    "is_active_28d": (0, 1),
    "at_most_one_kpi_user_28d": (0, 1),
    # Power: the budget holders' and champions' relationship beyond their activity counts above.
    "has_active_power_contact": (0, 1),
    "power_contacts_left_90d": (0, INF),
    # Value: the seats bought in use (over 1 when more users are active than seats were bought).
    "license_utilisation": (0, INF),
    # Sentiment: the CSM's pulse (red 0, yellow 1, green 2 while it counts), tickets and NPS.
    "days_since_pulse": (0, INF),
    "pulse_score": (0, 2),
    "open_tickets": (0, INF),
    "open_high_priority_tickets": (0, INF),
    "tickets_opened_28d": (0, INF),
    "median_days_to_close_90d": (0, INF),
    "nps_90d": (-100, 100),
    "nps_responses_90d": (0, INF),
    # Billing.
    "overdue_amount": (0, INF),
    "days_overdue": (0, INF),
}
# Columns of the account rollup that are not metrics (no scorecard bins them), which the sync
# table carries after the metrics: the latest pulse's sentiment while it counts.
ACCOUNT_CONTEXT = ("pulse_sentiment",)


def event_count_column(event: str) -> str:
    """The daily fact's count of one tracked event."""
    return f"{event}_count"


def event_metric_column(event: str) -> str:
    """A contact's 28-day count of one tracked event."""
    return f"{event}_28d"


def event_users_metric(event: str) -> str:
    """An account's contacts who did one tracked event in 28 days."""
    return f"{event}_users_28d"


def account_metric_domains(tracked_events: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """Every account metric for a configuration: the fixed ones, then users per tracked event."""
    return {**ACCOUNT_METRICS, **{event_users_metric(e): (0, INF) for e in tracked_events}}


# The sync table's explanation columns: one set per scorecard component, one colour per measure.
EXPLANATION_SUFFIXES = ("value", "bin", "points", "points_possible")
TREND_COLUMNS = (
    "previous_score_7d", "score_delta_7d", "previous_score_28d", "score_delta_28d", "previous_band", "band_changed",
)


def explanation_column(component: str, suffix: str) -> str:
    return f"{component}_{suffix}"


def activation_column(measure: str) -> str:
    return f"activation_{measure}"


def sync_table_columns(config) -> list[str]:
    """The sync table's documented columns, in order (docs/delivery.md, "The sync table's columns"),
    for a configuration."""
    return [
        "account_id", "crm_account_id", "account_name", "owner", "plan", "status", "arr", "vertical", "customer_since",
        "renewal_date", "snapshot_date", "days_to_renewal", "segment", "health_score", "health_band", "band_source",
        "in_onboarding", "activation_status", *(activation_column(m.name) for m in config.onboarding.measures),
        "top_drag", "missing_components", "score_reason",
        *(explanation_column(c, s) for c in config.components for s in EXPLANATION_SUFFIXES),
        *TREND_COLUMNS, *config.account_metrics, *ACCOUNT_CONTEXT, "computed_at", "scorecard_version",
    ]
