"""A warehouse written by an older version of the stages keeps working with the current one."""

from __future__ import annotations

import datetime as dt
import shutil

import duckdb
import pandas as pd
import pytest

from health_pipeline.assets.score_backtest.asset import BACKTEST_ASSETS
from health_pipeline.publish import SchemaChangeError, replace_date_range, stage
from health_pipeline.sample import SampleSpec, generate_sample
from health_pipeline_tests.conftest import Pipeline

FIRST, LAST = "2026-06-01", "2026-06-15"
RERUN = "2026-06-13"  # the days an engineer re-runs after upgrading: 06-13 .. 06-15


def schema(pipeline: Pipeline) -> dict[str, list[tuple[str, str]]]:
    """Every warehouse table's columns and types, in order."""
    frame = pipeline.query("""
        SELECT table_schema || '.' || table_name AS t, column_name, data_type
        FROM information_schema.columns ORDER BY t, ordinal_position
    """)
    return {t: list(zip(g["column_name"], g["data_type"])) for t, g in frame.groupby("t")}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Pipeline:
    pipeline = Pipeline(tmp_path_factory.mktemp("fresh"), sparse=True)
    generate_sample(pipeline.raw_dir, SampleSpec(accounts=8, days=15, seed=3))
    pipeline.materialize(FIRST, LAST)
    return pipeline


@pytest.mark.slow
def test_previous_schema_is_migrated_forward(fresh: Pipeline, tmp_path):
    old = Pipeline(tmp_path, sparse=True)
    shutil.copytree(fresh.raw_dir, old.raw_dir)
    old.materialize(FIRST, LAST)
    # Turn it into a warehouse the previous version would have written: no kpi_users_28d metric
    # yet, a since-removed column, usage_28d stored as DOUBLE, and no quarantine table.
    with duckdb.connect(str(old.root / "warehouse.duckdb")) as conn:
        for table in ("core.account_metrics", "export.account_health"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN kpi_users_28d")
        conn.execute("ALTER TABLE export.account_health ADD COLUMN legacy_score DOUBLE DEFAULT 1.5")
        conn.execute("ALTER TABLE core.contact_metrics ALTER usage_28d TYPE DOUBLE")
        conn.execute("DROP TABLE raw.quarantine")
    before = old.query("SELECT user_id, snapshot_date, usage_28d FROM core.contact_metrics ORDER BY ALL")

    old.materialize(RERUN, LAST)

    # Every table has exactly the current columns, in the current order, with the current types.
    assert schema(old) == schema(fresh)
    # The new metric is filled for the re-run days, exactly as a fresh build computes it ...
    sql = ("SELECT account_id, snapshot_date, kpi_users_28d FROM core.account_metrics "
           "WHERE snapshot_date {} ORDER BY ALL")
    pd.testing.assert_frame_equal(old.query(sql.format(">= ?"), [RERUN]), fresh.query(sql.format(">= ?"), [RERUN]))
    assert old.query(sql.format(">= ?"), [RERUN])["kpi_users_28d"].notna().all()
    # ... and NULL on the days not re-run, whose other values are kept (usage_28d cast back).
    assert old.query(sql.format("< ?"), [RERUN])["kpi_users_28d"].isna().all()
    after = old.query("SELECT user_id, snapshot_date, usage_28d FROM core.contact_metrics ORDER BY ALL")
    pd.testing.assert_frame_equal(before.astype({"usage_28d": "int64"}), after)
    # The sync files of the re-run days carry the documented columns in the documented order.
    for day in ("2026-06-13", "2026-06-15"):
        old_file = pd.read_parquet(old.export_dir / "account_health" / f"snapshot_date={day}.parquet")
        new_file = pd.read_parquet(fresh.export_dir / "account_health" / f"snapshot_date={day}.parquet")
        assert list(old_file.columns) == list(new_file.columns)
        pd.testing.assert_frame_equal(old_file.drop(columns="computed_at"), new_file.drop(columns="computed_at"))


@pytest.mark.slow
def test_unchanged_schema_is_not_rewritten(fresh: Pipeline, tmp_path):
    """A rerun on a current warehouse swaps rows only: no table is recreated."""
    pipeline = Pipeline(tmp_path, sparse=True)
    shutil.copytree(fresh.raw_dir, pipeline.raw_dir)
    pipeline.materialize(FIRST, LAST)
    oids = "SELECT schema_name || '.' || table_name, table_oid FROM duckdb_tables() ORDER BY 1"
    # The raw snapshots, the history built from them and the backtest are replaced whole every run.
    snapshots = {"raw.accounts", "raw.contacts", "raw.identity_map", "raw.outcomes", "raw.account_history",
                 "raw.contact_history", "export.backtest_inputs", *(f"export.{name}" for name in BACKTEST_ASSETS)}
    before = {t: oid for t, oid in pipeline.query(oids).values if t not in snapshots}
    pipeline.materialize(LAST, LAST)
    after = {t: oid for t, oid in pipeline.query(oids).values if t not in snapshots}
    assert before == after and len(before) == 19  # every table but the snapshots, bookkeeping and signals too


def test_a_type_change_existing_rows_cannot_take_fails_with_the_rebuild_command():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA core")
    conn.execute("CREATE TABLE core.t AS SELECT DATE '2026-06-01' AS d, 'many' AS n")
    staging = stage(conn, "t", "SELECT DATE '2026-06-02' AS d, 3 AS n")
    expected = (r"^core\.t: existing rows cannot take the new column types \(Conversion Error: .*\)\. "
                r"Rebuild the table: DROP TABLE core\.t, then re-run its asset over the whole range")
    with pytest.raises(SchemaChangeError, match=expected):
        replace_date_range(conn, "core.t", "d", dt.date(2026, 6, 2), dt.date(2026, 6, 2), staging)
    # The failed swap changed nothing.
    assert conn.execute("SELECT * FROM core.t").fetchall() == [(dt.date(2026, 6, 1), "many")]
