"""The Spark SQL of a DuckDB statement: the project's .sql templates stay the one definition, and
sqlglot writes them for Spark, with a few fix-ups of our own and a denylist.

sqlglot's strict mode refuses what it cannot write, but some constructs it writes are valid Spark
SQL that means something else. Those the event stage needs are fixed here (`FIXES`); the others
are refused (`DENIED`), naming the construct, so a template that uses one fails at once instead
of giving other rows on Spark. Nothing here imports pyspark: transpiling is tested without a JVM.

What a statement does on Spark is decided by its kind (`SparkStatement.kind`), which the engine
(engines.spark.SparkSql) carries out:

- `query`: a SELECT (or DESCRIBE), whose rows are the result;
- `view`: CREATE OR REPLACE TEMP VIEW, a view Spark evaluates on every read, as DuckDB does;
- `table`: CREATE TEMP TABLE … AS, which DuckDB computes once. Spark would write it as a view,
  evaluated again by each reader (after its inputs may have changed), so the engine materialises
  the query instead and names the result; CREATE TEMP TABLE (columns) is the same with no rows;
- `insert`: INSERT INTO a temp table, positional or BY NAME: the engine appends the rows to the
  materialised table.

Anything else (DELETE, UPDATE, a table in the warehouse) is not portable and is refused.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

# The warehouse's schemas: a table `raw.events` is, on Spark, the temp view `raw_events`.
WAREHOUSE_SCHEMAS = ("raw", "core", "export")


class NotPortable(ValueError):
    """A statement Spark would run differently from DuckDB, or cannot run: the message names the construct."""


@dataclass(frozen=True)
class SparkStatement:
    """One statement for Spark: what it does (`kind`), the temp table or view it names, its Spark
    SQL (for `table` and `insert`, the query whose rows they hold), and whether an insert matches
    columns by name."""

    kind: str  # query, view, table, insert
    sql: str
    name: str | None = None
    by_name: bool = False


def view_name(table: exp.Table) -> str:
    """The temp view that stands for a warehouse table on Spark: raw.events -> raw_events."""
    return f"{table.db}_{table.name}" if table.db else table.name


# --- the denylist: valid on Spark, but not the same (or not at scale) -------------------------

def _ordered_aggregate(node: exp.Expression) -> str | None:
    # list(x ORDER BY y) becomes collect_list(x), whose order is whatever the shuffle gives.
    if isinstance(node, exp.AggFunc) and isinstance(node.this, exp.Order):
        return "an aggregate with ORDER BY inside it (list/array_agg/string_agg(x ORDER BY y)): Spark drops the order"
    return None


def _format(node: exp.Expression) -> str | None:
    # format('{:.10g}', x) becomes format_string, which prints the pattern as written.
    if isinstance(node, exp.Format) or (isinstance(node, exp.Anonymous) and node.name.lower() == "format"):
        return "format(): DuckDB's {}-patterns are printed as they are by Spark's format_string"
    return None


def _round(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Round):
        return "round(): the engines round doubles differently at the half; round where the value is shown"
    return None


def _hash(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Anonymous) and node.name.lower() == "hash" or isinstance(node, exp.SHA2):
        return "hash(): each engine has its own hash function"
    return None


def _not_in_subquery(node: exp.Expression) -> str | None:
    # Spark plans x NOT IN (SELECT …) as a nested-loop join (every row against every subquery row)
    # unless it stands alone in its WHERE and the subquery is small enough to broadcast: over
    # 20 minutes for 10 days at scale M.
    if isinstance(node, exp.Not) and isinstance(node.this, exp.In) and node.this.args.get("query"):
        return "NOT IN (subquery): Spark checks it row by row against every subquery row; LEFT JOIN the ids instead"
    return None


DENIED = (_ordered_aggregate, _format, _round, _hash, _not_in_subquery)


def _refuse_denied(tree: exp.Expression) -> None:
    for node in tree.walk():
        for rule in DENIED:
            if why := rule(node):
                raise NotPortable(f"not portable to Spark: {why}")


# --- the fix-ups: what sqlglot writes validly but wrongly for us -------------------------------

def _warehouse_tables_as_views(tree: exp.Expression) -> exp.Expression:
    """raw.events -> raw_events: Spark's temp views have no schema."""
    for table in tree.find_all(exp.Table):
        if table.db in WAREHOUSE_SCHEMAS and not table.catalog:
            table.set("this", exp.to_identifier(view_name(table), quoted=True))
            table.set("db", None)
    return tree


def _no_materialization_hints(tree: exp.Expression) -> exp.Expression:
    """WITH x AS [NOT] MATERIALIZED (…): DuckDB's planner hint, which Spark cannot parse."""
    for cte in tree.find_all(exp.CTE):
        cte.set("materialized", None)
    return tree


def _to_json_keeps_nulls(tree: exp.Expression) -> exp.Expression:
    """to_json(x): Spark leaves out the null fields that DuckDB writes as null."""
    for call in list(tree.find_all(exp.Anonymous)):
        if call.name.lower() == "to_json" and len(call.expressions) == 1:
            options = exp.Anonymous(this="MAP", expressions=[exp.Literal.string("ignoreNullFields"),
                                                             exp.Literal.string("false")])
            call.set("expressions", [*call.expressions, options])
    return tree


FIXES = (_warehouse_tables_as_views, _no_materialization_hints, _to_json_keeps_nulls)


def _is_temporary(create: exp.Create) -> bool:
    properties = create.args.get("properties")
    return bool(properties and any(isinstance(p, exp.TemporaryProperty) for p in properties.expressions))


def _empty_query(schema: exp.Schema) -> exp.Select:
    """CREATE TEMP TABLE t (a DATE, …) as the query of no rows with those columns (JSON as its text)."""
    def spark_type(kind: exp.DataType) -> exp.DataType:
        return exp.DataType.build("TEXT") if kind.is_type(exp.DataType.Type.JSON) else kind

    columns = [exp.cast(exp.null(), spark_type(column.args["kind"])).as_(column.this) for column in schema.expressions]
    return exp.select(*columns).where(exp.false())


def _spark(tree: exp.Expression) -> str:
    return tree.sql(dialect="spark", unsupported_level=ErrorLevel.RAISE, comments=False)


def _statement(tree: exp.Expression) -> SparkStatement:
    if isinstance(tree, exp.Query | exp.Describe):
        return SparkStatement("query", _spark(tree))
    if isinstance(tree, exp.Create) and _is_temporary(tree) or (
            isinstance(tree, exp.Create) and tree.kind == "VIEW"):
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        name = view_name(target)
        if tree.kind == "VIEW":
            if not _is_temporary(tree):
                raise NotPortable(f"not portable to Spark: a view in the warehouse ({name})")
            return SparkStatement("view", _spark(tree), name)
        query = tree.expression if tree.expression else _empty_query(tree.this)
        return SparkStatement("table", _spark(query), name)
    if isinstance(tree, exp.Insert) and isinstance(tree.this, exp.Table) and isinstance(tree.expression, exp.Query):
        return SparkStatement("insert", _spark(tree.expression), view_name(tree.this),
                              by_name=bool(tree.args.get("by_name")))
    raise NotPortable(f"not portable to Spark: {tree.key.upper()} (the Spark engine reads and stages; "
                      "it changes no table in place)")


@functools.lru_cache(maxsize=512)
def transpile(duckdb_sql: str) -> tuple[SparkStatement, ...]:
    """The statements of `duckdb_sql` (DuckDB's dialect, `$name` parameters) as Spark runs them
    (`:name` parameters); a NotPortable error names what Spark would run differently or cannot."""
    try:
        trees = [t for t in sqlglot.parse(duckdb_sql, read="duckdb") if t is not None]
        statements = []
        for tree in trees:
            _refuse_denied(tree)
            for fix in FIXES:
                tree = fix(tree)
            statements.append(_statement(tree))
    except SqlglotError as exc:
        raise NotPortable(f"not portable to Spark: {str(exc).splitlines()[0]}") from None
    return tuple(statements)
