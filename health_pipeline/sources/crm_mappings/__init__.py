"""CRM mappings: the CRM's tables read from a CRM's export in the CRM's own names.

A mapping is a YAML file: `salesforce.yaml` and `hubspot.yaml` here, or a file of your own
(HEALTH_CRM_MAPPING names either). It names the CRM (`crm`, for messages) and, for `accounts`
and, if the CRM provides them, `outcomes` and the signal tables (csm_pulse, tickets,
nps_responses, invoices):
- `table`: the CRM's table, found in the folder the source reads the CRM from as `<table>.csv`,
  `<table>.parquet` or a folder `<table>/` (Salesforce's `Account`, HubSpot's `companies`);
- `columns`: each of our columns -> the CRM's column it is read from (headers match whatever their
  case; one CRM column may feed two of ours, as Salesforce's `Id` feeds account_id and crm_account_id);
- `values`: for an enumeration (status, plan, outcome), the CRM's values -> ours, matched trimmed
  and whatever their case. A value the map does not know is read as written, so the column's own
  rule judges it: an unknown status loads as it is, an unknown outcome is quarantined as unknown_outcome;
- `constants`: a text column the CRM has no field for -> the value every row has.
Every required column is mapped or constant; an optional one left out reads as missing, and one
mapped to a column the file lacks reads as missing too, as in our own names. The file is checked
whole when it is loaded, and every problem is reported, one line each.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml

from health_pipeline.raw_input import (
    CRM_TABLES,
    CUSTOMER_OUTCOMES,
    ENUM_COLUMNS,
    ID_COLUMNS,
    OPTIONAL_COLUMNS,
    RAW_TABLES,
    VALUE_TYPES,
    CrmTable,
)
from health_pipeline.redaction import redact

HERE = Path(__file__).resolve().parent
MAPPING_KEYS = ("crm", *CRM_TABLES)
TABLE_KEYS = ("table", "columns", "values", "constants")


class CrmMappingError(ValueError):
    """A CRM mapping that cannot be used: one line per problem, each naming the file and the key."""


@dataclass(frozen=True)
class CrmMapping:
    crm: str
    tables: dict[str, CrmTable]  # the CRM's tables the mapping maps


class _UniqueKeys(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping, where PyYAML keeps the last."""


def _mapping_without_repeats(loader: _UniqueKeys, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = []
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice", key_node.start_mark)
        seen.append(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)


def names() -> list[str]:
    """The shipped mappings."""
    return sorted(path.stem for path in HERE.glob("*.yaml"))


def load_mapping(choice: str) -> CrmMapping:
    """The mapping HEALTH_CRM_MAPPING names: a shipped one by its name, else a YAML file by its path."""
    choice = choice.strip()
    path = HERE / f"{choice}.yaml" if choice in names() else Path(choice)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeys)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "it is not UTF-8 text"
        raise CrmMappingError(redact(f"HEALTH_CRM_MAPPING={choice!r} is neither a shipped CRM mapping "
                                     f"({', '.join(names())}) nor a file that can be read ({reason})")) from None
    except yaml.YAMLError as exc:  # PyYAML's own words, with where it stopped
        mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        raise CrmMappingError(redact(f"CRM mapping {path}: {where}: {problem or 'is not valid YAML'}")) from None
    return _Checker(path).mapping(raw)


def _did_you_mean(word, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _is_text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


class _Checker:
    """Checks a parsed mapping whole, noting every problem before it gives up."""

    def __init__(self, path: Path):
        self.path = path
        self.problems: list[str] = []

    def problem(self, field: str, reason: str) -> None:
        self.problems.append(f"CRM mapping {self.path}: {field}: {reason}")

    def keys(self, raw: dict, known: tuple[str, ...], where: str) -> None:
        for key in raw:
            if key not in known:
                self.problem(f"{where}{key}", f"is not a key here ({', '.join(known)}){_did_you_mean(key, known)}")

    def section(self, raw: dict, key: str, where: str) -> dict:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            self.problem(f"{where}.{key}", "must be a mapping")
            return {}
        return value

    def mapping(self, raw) -> CrmMapping:
        if not isinstance(raw, dict):
            self.problem("<file>", f"must be a mapping with the keys {', '.join(MAPPING_KEYS)}")
            raise CrmMappingError("\n".join(self.problems))
        self.keys(raw, MAPPING_KEYS, "")
        crm = raw.get("crm")
        if not _is_text(crm):
            self.problem("crm", "must name the CRM, such as Salesforce")
        if not any(name in raw for name in CRM_TABLES):
            self.problem("<file>", f"maps none of the CRM's tables ({', '.join(CRM_TABLES)})")
        tables = {name: self.table(name, raw[name], str(crm).strip()) for name in CRM_TABLES if name in raw}
        if self.problems:
            raise CrmMappingError("\n".join(self.problems))
        return CrmMapping(crm.strip(), tables)

    def table(self, name: str, raw, crm: str) -> CrmTable | None:
        if not isinstance(raw, dict):
            self.problem(name, f"must be a mapping with the keys {', '.join(TABLE_KEYS)}")
            return None
        self.keys(raw, TABLE_KEYS, f"{name}.")
        table = raw.get("table")
        if not _is_text(table) or any(c in table for c in "/\\"):
            self.problem(f"{name}.table", "must name the CRM's table, a file or folder name such as Account")
        ours = (*RAW_TABLES[name], *OPTIONAL_COLUMNS[name])
        columns, values, constants = (self.section(raw, key, name) for key in ("columns", "values", "constants"))
        for key, section in (("columns", columns), ("values", values), ("constants", constants)):
            for column in section:
                if column not in ours:
                    self.problem(f"{name}.{key}.{column}",
                                 f"is not a column of {name} ({', '.join(ours)}){_did_you_mean(column, ours)}")
        for column, source in columns.items():
            if not _is_text(source):
                self.problem(f"{name}.columns.{column}", "must name the CRM's column it is read from")
        if unmapped := [c for c in RAW_TABLES[name] if c not in columns and c not in constants]:
            self.problem(f"{name}.columns", f"maps nothing to {', '.join(unmapped)}, which {name} requires "
                                            "(name the CRM's column for each, or give a constant)")
        self.constants(name, constants, columns)
        maps = {column: self.value_map(name, column, value_map, constants)
                for column, value_map in values.items() if column in ours}
        return CrmTable(crm, str(table).strip(), {c: s.strip() for c, s in columns.items() if _is_text(s)},
                        maps, {c: v for c, v in constants.items() if _is_text(v)})

    def constants(self, name: str, constants: dict, columns: dict) -> None:
        text = [c for c in (*RAW_TABLES[name], *OPTIONAL_COLUMNS[name])
                if VALUE_TYPES.get(c, "VARCHAR") == "VARCHAR" and c not in ID_COLUMNS]
        for column, value in constants.items():
            where = f"{name}.constants.{column}"
            if column in columns:
                self.problem(where, "is also under columns: a column is read from the CRM or constant, not both")
            elif column in RAW_TABLES[name] or column in OPTIONAL_COLUMNS[name]:
                if column not in text:
                    self.problem(where, f"a constant stands only for a text column ({', '.join(text)})")
                elif not _is_text(value):
                    self.problem(where, "must be text (quote it)")

    def value_map(self, name: str, column: str, value_map, constants: dict) -> dict[str, str]:
        """The map with the CRM's values as they are matched: trimmed and lower-cased."""
        where = f"{name}.values.{column}"
        enums = [c for c in (*RAW_TABLES[name], *OPTIONAL_COLUMNS[name]) if c in ENUM_COLUMNS]
        if column not in ENUM_COLUMNS:
            self.problem(where, f"{column} is not an enumeration; only {', '.join(enums)} take a value map")
            return {}
        if column in constants:
            self.problem(where, f"{column} is a constant: a value map translates a column read from the CRM")
            return {}
        if not isinstance(value_map, dict) or not value_map:
            self.problem(where, "must map the CRM's values to ours")
            return {}
        matched: dict[str, tuple[str, str]] = {}  # the matched form -> (the value as written, ours)
        for crm_value, our_value in value_map.items():
            if isinstance(crm_value, bool) or not isinstance(crm_value, (str, int)):
                self.problem(where, f"the CRM's value {crm_value!r} must be text (quote it)")
                continue
            key = str(crm_value).strip().lower()
            if not _is_text(our_value):
                self.problem(f"{where}.{crm_value}", f"must be one of ours for {column}, as text")
            elif column == "outcome" and our_value.strip().lower() not in CUSTOMER_OUTCOMES:
                self.problem(f"{where}.{crm_value}", f"{our_value!r} is not an outcome "
                                                     f"({', '.join(CUSTOMER_OUTCOMES)})")
            elif key in matched and matched[key][1] != our_value.strip().lower():
                self.problem(where, f"{matched[key][0]!r} and {crm_value!r} are the same value (values match "
                                    "trimmed, whatever their case) mapped two ways")
            else:
                matched[key] = (str(crm_value), our_value.strip().lower())
        return {key: ours for key, (_, ours) in matched.items()}
