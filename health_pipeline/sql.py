"""The one way Python runs the pipeline's SQL: render a .sql file that sits beside its asset.

Templates are Jinja2 with StrictUndefined, so a name the caller did not pass fails at once.
Templates shape only the statement: column lists that follow the configuration (one column per
tracked event, component or measure). Data values never enter the text; they are bound as
`$name` parameters. Identifiers that come from the configuration go through the `quote` filter.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import jinja2

from health_pipeline import contract
from health_pipeline.raw_input import SOURCE_FILE_COLUMN

PACKAGE_DIR = Path(__file__).resolve().parent


def quote(identifier: str) -> str:
    """A DuckDB identifier, double-quoted, so any configured name is safe as a column name."""
    return '"' + str(identifier).replace('"', '""') + '"'


def literal(text: str) -> str:
    """A string literal, for the one place a value cannot be a parameter: a view's definition."""
    return "'" + str(text).replace("'", "''") + "'"


def cache_dir() -> Path:
    """Where the pipeline keeps what it makes the same way in every process, for the next one (the
    compiled templates, the morning report's Vega bundle and chart specs):
    `$XDG_CACHE_HOME/health_pipeline`, else `~/.cache/health_pipeline`. Deleting it is always safe."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "health_pipeline"


def read_kept(name: str) -> bytes | None:
    """What `keep` left in cache_dir() as `name`, or None."""
    try:
        return (cache_dir() / name).read_bytes()
    except OSError:
        return None


def keep(name: str, data: bytes) -> None:
    """Leave `data` in cache_dir() as `name`, whole or not at all, whichever process writes it last;
    a cache folder that cannot be written is not used."""
    kept = cache_dir() / name
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        partial = kept.with_name(f"{name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        partial.replace(kept)
    except OSError:
        pass


class CompiledTemplates(jinja2.BytecodeCache):
    """Jinja2 templates compiled, kept in cache_dir(): each run's assets, and its morning report,
    run in a fresh process, which compiled the same templates again (0.7 s of the report's build at
    scale M). Jinja2 uses a copy only if it was compiled from the same source by the same Jinja2 and
    Python (the bucket's key and checksum)."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        data = read_kept(f"templates-{bucket.key}.cache")
        if data is not None:
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        keep(f"templates-{bucket.key}.cache", bucket.bytecode_to_string())


_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(PACKAGE_DIR),
    bytecode_cache=CompiledTemplates(),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["quote"] = quote
_templates.filters["literal"] = literal
# The column-naming rules, so a template names a configured column as every other asset does.
_templates.globals.update(
    event_count_column=contract.event_count_column,
    event_metric_column=contract.event_metric_column,
    event_users_metric=contract.event_users_metric,
    explanation_column=contract.explanation_column,
    activation_column=contract.activation_column,
    account_context=contract.ACCOUNT_CONTEXT,
    source_file_column=SOURCE_FILE_COLUMN,
)


def render(path: Path, **context) -> str:
    """The SQL text of the template at `path` (inside the package), rendered with `context`."""
    return _templates.get_template(Path(path).resolve().relative_to(PACKAGE_DIR).as_posix()).render(**context)


def sql_files() -> list[Path]:
    """Every .sql file in the package, for the test that renders and parses them all."""
    return sorted(PACKAGE_DIR.rglob("*.sql"))


class SqlFolder:
    """The .sql files beside one asset's module, each named after what its statement builds."""

    def __init__(self, module_file: str):
        self.folder = Path(module_file).resolve().parent

    def render(self, name: str, **context) -> str:
        return render(self.folder / f"{name}.sql", **context)

    def run(self, conn: duckdb.DuckDBPyConnection, name: str, params: dict | None = None, **context):
        """Render `name`.sql with `context` and execute it with `params` bound."""
        return conn.execute(self.render(name, **context), params or {})


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, params=None):
    """The single value a query returns (the result is drained, as DuckDB 2 requires)."""
    return conn.execute(sql, params or {}).fetchall()[0][0]


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    if hasattr(conn, "table_exists"):  # the Spark engine's connection (engines.spark.SparkSql) answers itself
        return conn.table_exists(table)
    schema, name = table.split(".")
    return scalar(
        conn, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = $schema AND table_name = $name",
        {"schema": schema, "name": name},
    ) > 0


def column_type(conn: duckdb.DuckDBPyConnection, table: str, column: str) -> str | None:
    """The type of `table`'s column `column` (schema.table, or a temp table's name), None without it."""
    described = {name: dtype for name, dtype, *_ in conn.execute(f"DESCRIBE {table}").fetchall()}
    return described.get(column)
