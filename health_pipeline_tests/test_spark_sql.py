"""The templates' SQL written for Spark (engines.spark_sql), without a JVM: every template the event
stage runs on Spark transpiles, each fix-up does what it says, and each construct that Spark would
run silently differently is refused by name."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from health_pipeline.assets.raw_activity.on_spark import SPARK_TEMPLATES
from health_pipeline.engines.spark_sql import NotPortable, SparkStatement, transpile
from health_pipeline.publish import day_figures
from health_pipeline.scorecard.parser import load_config
from health_pipeline_tests.test_sql_templates import _contexts, _raw_tables, _variant


def test_every_template_the_event_stage_runs_on_spark_transpiles(tmp_path):
    # As on_spark.read_raw gives them: read through a view of their files.
    tables = {name: table and replace(table, view=f"raw_{name}_files")
              for name, table in _raw_tables(tmp_path, "parquet").items()}
    for config in (load_config(), _variant(tmp_path)):
        rendered = _contexts(config, tables)
        for template in SPARK_TEMPLATES:
            assert rendered[template], template
            for sql in rendered[template]:
                statements = transpile(sql)
                assert statements, template
                assert all(s.kind in ("query", "view", "table", "insert") for s in statements), template


def test_the_metadata_statement_transpiles():
    class Recorder:  # day_figures' statement, as it would be run
        def execute(self, sql, params=None):
            self.sql = sql
            return self

        def fetchall(self):
            return []

    recorder = Recorder()
    day_figures(recorder, "raw.events", "activity_date", None, None, by="outcome")
    (statement,) = transpile(recorder.sql)
    assert statement.kind == "query" and "EXPLODE(SEQUENCE(" in statement.sql and "`raw_events`" in statement.sql


def test_a_temp_table_is_materialised_not_a_view_spark_evaluates_again():
    assert transpile("CREATE OR REPLACE TEMP TABLE kept AS SELECT 1 AS a") == (
        SparkStatement("table", "SELECT 1 AS a", "kept"),)
    assert transpile("CREATE OR REPLACE TEMP TABLE q (partition_date DATE, source_table VARCHAR, row_json JSON)") == (
        SparkStatement("table", "SELECT CAST(NULL AS DATE) AS partition_date, CAST(NULL AS STRING) AS source_table, "
                                "CAST(NULL AS STRING) AS row_json WHERE FALSE", "q"),)
    view = transpile("CREATE OR REPLACE TEMP VIEW v AS SELECT 1 AS a")
    assert view == (SparkStatement("view", "CREATE OR REPLACE TEMPORARY VIEW v AS SELECT 1 AS a", "v"),)


def test_an_insert_appends_to_the_materialised_table_by_position_or_by_name():
    assert transpile("INSERT INTO q SELECT 1, 2") == (SparkStatement("insert", "SELECT 1, 2", "q"),)
    assert transpile("INSERT INTO raw.events BY NAME SELECT 1 AS a") == (
        SparkStatement("insert", "SELECT 1 AS a", "raw_events", by_name=True),)


def test_warehouse_tables_are_temp_views_and_parameters_are_named():
    (statement,) = transpile("SELECT count(*) FROM raw.events e JOIN core.daily_contact_activity f USING (user_id) "
                             "WHERE e.activity_date = $day AND f.sessions > 0")
    assert "FROM `raw_events` AS e JOIN `core_daily_contact_activity` AS f" in statement.sql
    assert "e.activity_date = :day" in statement.sql


@given(st.sampled_from(["raw", "core", "export"]), st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True))
def test_any_warehouse_table_becomes_the_view_of_its_schema_and_name(schema, name):
    (statement,) = transpile(f'SELECT * FROM {schema}."{name}"')
    assert statement.sql == f"SELECT * FROM `{schema}_{name}`"


def test_duckdbs_planner_hints_are_dropped():
    (statement,) = transpile("WITH a AS MATERIALIZED (SELECT 1 AS x), b AS NOT MATERIALIZED (SELECT 2 AS x) "
                             "SELECT * FROM a, b")
    assert "MATERIALIZED" not in statement.sql


def test_to_json_keeps_null_fields_as_duckdb_writes_them():
    (statement,) = transpile("SELECT to_json(struct_pack(a := NULL, b := 'x'))")
    assert statement.sql == "SELECT TO_JSON(STRUCT(NULL AS a, 'x' AS b), MAP('ignoreNullFields', 'false'))"


@pytest.mark.parametrize("sql, construct", [
    ("SELECT list(x ORDER BY y) FROM t", "ORDER BY inside it"),
    ("SELECT array_agg(x ORDER BY y) FROM t", "ORDER BY inside it"),
    ("SELECT string_agg(x, ',' ORDER BY x) FROM t", "ORDER BY inside it"),
    ("SELECT format('{:.10g}', x) FROM t", "format()"),
    ("SELECT round(x, 2) FROM t", "round()"),
    ("SELECT hash(x) FROM t", "hash()"),
    ("SELECT * FROM t WHERE a IS NULL OR b NOT IN (SELECT b FROM u)", "NOT IN (subquery)"),
    ("SELECT * FROM t WHERE b NOT IN (SELECT b FROM u)", "NOT IN (subquery)"),
    ("DELETE FROM raw.events WHERE activity_date = $day", "DELETE"),
    ("CREATE OR REPLACE TABLE raw.events AS SELECT 1", "CREATE"),
    ("CREATE OR REPLACE VIEW core.x AS SELECT 1", "a view in the warehouse"),
    ("SELECT * FROM read_parquet($a, $b)", "READ_PARQUET"),
])
def test_a_construct_spark_would_run_differently_is_refused_by_name(sql, construct):
    with pytest.raises(NotPortable, match="not portable to Spark") as refused:
        transpile(sql)
    assert construct in str(refused.value)
