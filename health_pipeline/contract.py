"""The per-account metrics every stage agrees on, with the range of values each can take.

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
}

# The sync table's account attributes, in order, ahead of the score.
SYNC_ATTRIBUTES = ("account_id", "account_name", "owner", "plan", "status", "arr", "vertical", "snapshot_date")


def sync_table_columns(score_columns: list[str]) -> list[str]:
    """The sync table's documented columns, in order (README, "What you get").

    `score_columns` are the `score_<component>` columns, one per scorecard component.
    """
    return [
        *SYNC_ATTRIBUTES, "health_score", "health_band", *score_columns, *ACCOUNT_METRICS,
        "computed_at", "scorecard_version",
    ]
