"""Markdown previews that a materialization shows in the Dagster UI, read from the warehouse."""

import datetime as dt

import dagster as dg
import duckdb

AT_RISK_SHOWN = 10


def markdown_table(header: list[str], rows: list[tuple]) -> str:
    def cell(value) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:,.1f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def score_preview(conn: duckdb.DuckDBPyConnection, snapshot_date: dt.date) -> dict[str, dg.MetadataValue]:
    """The most at-risk accounts and the score distribution per band on `snapshot_date`."""
    at_risk = conn.execute("""
        SELECT h.account_id, a.name, a.owner, CAST(round(a.arr) AS BIGINT), h.health_score, h.health_band
        FROM core.account_health h JOIN raw.accounts a USING (account_id)
        WHERE h.snapshot_date = ?
        ORDER BY h.health_score, a.arr DESC, h.account_id
        LIMIT ?
    """, [snapshot_date, AT_RISK_SHOWN]).fetchall()
    bands = conn.execute("""
        WITH band_scores AS (
            SELECT health_band, health_score, count(*) OVER () AS accounts_scored
            FROM core.account_health WHERE snapshot_date = ?
        )
        SELECT health_band, count(*) AS accounts, round(100 * count(*) / any_value(accounts_scored), 1) AS share,
               min(health_score), median(health_score), max(health_score)
        FROM band_scores GROUP BY health_band ORDER BY min(health_score)
    """, [snapshot_date]).fetchall()
    return {
        "most_at_risk": dg.MetadataValue.md(
            f"**The {len(at_risk)} accounts most at risk on {snapshot_date}**\n\n"
            + markdown_table(["account_id", "account", "owner", "arr", "health_score", "health_band"], at_risk)
        ),
        "score_distribution": dg.MetadataValue.md(
            f"**Scores per band on {snapshot_date}**\n\n"
            + markdown_table(["band", "accounts", "% of accounts", "lowest", "median", "highest"], bands)
        ),
    }
