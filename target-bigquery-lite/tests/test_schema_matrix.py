"""The schema matrix: every mapped type and every hostile name, as key and as non-key, in SQL.

Each combination (a property's JSON Schema type, its name, its role: the only key, part of
a composite key, or a plain column next to an `id` key) is a stream SCHEMA. The target
must either refuse it up front (an `InputError` naming the stream and the property) or
build MERGE, version-delete and overwrite-replace statements that ZetaSQL, configured as
BigQuery, accepts against the tables those statements run on (the final table, and the
staging table with its sequence column). Nothing here needs the emulator.

The target's SQL builders are reached through the four adapters below only, so a move of
the builders (one module per load method) needs only these lines changed.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from dev_services.sql_catalog import TableRef
from dev_services.sql_checks import check_statements
from dev_services.zetasql_engine import engine

from target_bigquery_lite.columns import RUN_COLUMN, SEQUENCE_COLUMN, VERSION_COLUMN
from target_bigquery_lite.config import parse_settings
from target_bigquery_lite.errors import InputError
from target_bigquery_lite.identifiers import quote_table
from target_bigquery_lite.load_methods import method_for
from target_bigquery_lite.load_methods.merge import build_merge_sql
from target_bigquery_lite.load_methods.overwrite import build_replace_sql
from target_bigquery_lite.messages import SchemaMessage
from target_bigquery_lite.streams import build_spec
from target_bigquery_lite.versions import (
    RUN_PARAMETER,
    VERSION_PARAMETER,
    build_delete_old_versions_sql,
)

PROJECT, DATASET = "flows-local", "matrix"
SETTINGS, _ = parse_settings({"project": PROJECT, "dataset": DATASET})


# --- adapters: the only lines that know where the target keeps these ---------------------------
def plan_columns(
    stream: str, schema: dict[str, Any], keys: tuple[str, ...]
) -> tuple[list[dict], list[str]]:
    """The stream's columns (REST shape) and key columns; InputError if the target refuses it."""
    built = build_spec(
        SchemaMessage(stream, schema, keys),
        SETTINGS,
        lambda key_columns: method_for(None, stream, key_columns),
        "matrix",
    )
    return [field.to_api_repr() for field in built.wanted], list(built.key_columns)


def merge_sql(target: str, staging: str, keys: list[str], columns: list[str]) -> str:
    return build_merge_sql(target, staging, keys, columns)


def delete_old_versions_sql(target: str) -> str:
    return build_delete_old_versions_sql(target)


def replace_sql(target: str, staging: str, columns: list[str]) -> str:
    return build_replace_sql(target, staging, columns)


# --- the matrix ------------------------------------------------------------------------------
TYPES: dict[str, dict[str, Any]] = {
    "integer": {"type": "integer"},
    "nullable integer": {"type": ["null", "integer"]},
    "number": {"type": "number"},
    "decimal multipleOf": {"type": "number", "multipleOf": 0.01},
    "decimal string": {"type": "string", "format": "decimal"},
    "boolean": {"type": "boolean"},
    "string": {"type": "string"},
    "date-time": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "time": {"type": "string", "format": "time"},
    "record": {"type": "object", "properties": {"a": {"type": "integer"}, "T": {"type": "string"}}},
    "nested record": {
        "type": "object",
        "properties": {"inner": {"type": "object", "properties": {"S": {"type": "number"}}}},
    },
    "object without properties (JSON)": {"type": "object"},
    "union (JSON)": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    "untyped (JSON)": {},
    "array of strings": {"type": "array", "items": {"type": "string"}},
    "array of records": {
        "type": "array",
        "items": {"type": "object", "properties": {"k": {"type": "integer"}}},
    },
    "array of arrays (JSON)": {"type": "array", "items": {"type": "array", "items": {}}},
}
NAMES = [
    "plain", "select", "from", "merge", "using", "qualify", "when", "all", "end", "if",
    "a", "T", "S", "t", "s", "名前", "café", "my-col", "1st", "has space", "a`b",
    "a" * 300, "b" * 301, "_PARTITIONTIME", SEQUENCE_COLUMN,
]  # fmt: skip
ROLES = ("only key", "in a composite key", "not a key")
CASE_PAIRS = [("Name", "name"), ("ID", "Id"), ("T", "t")]


def combinations() -> list[tuple[str, str, str]]:
    return list(itertools.product(TYPES, NAMES, ROLES))


def stream_of(type_name: str, name: str, role: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    other = "id" if name != "id" else "other_id"
    properties = {name: TYPES[type_name], other: {"type": "integer"}}
    keys = {"only key": (name,), "in a composite key": (other, name), "not a key": (other,)}
    schema = {"type": "object", "properties": properties, "required": [other]}
    return schema, keys[role]


def statements_for(index: int, columns: list[dict], keys: list[str]) -> tuple[list, list]:
    """The catalog tables and the statements the target runs for one combination."""
    target = TableRef(PROJECT, DATASET, f"t_{index}")
    staging = TableRef(PROJECT, DATASET, f"_bqlite_stage_{index}")
    final = [
        *columns,
        {"name": VERSION_COLUMN, "type": "INTEGER", "mode": "NULLABLE"},
        {"name": RUN_COLUMN, "type": "STRING", "mode": "NULLABLE"},
    ]
    staged = [*columns, {"name": SEQUENCE_COLUMN, "type": "INTEGER", "mode": "NULLABLE"}]
    tables = [
        ((target.project, target.dataset, target.table), target, {"schema": {"fields": final}}),
        (
            (staging.project, staging.dataset, staging.table),
            staging,
            {"schema": {"fields": staged}},
        ),
    ]
    target_sql = quote_table(target.project, target.dataset, target.table)
    staging_sql = quote_table(staging.project, staging.dataset, staging.table)
    names = [column["name"] for column in columns]
    version = [
        {"name": VERSION_PARAMETER, "parameterType": {"type": "INT64"}},
        {"name": RUN_PARAMETER, "parameterType": {"type": "STRING"}},
    ]
    statements = [
        ("MERGE", merge_sql(target_sql, staging_sql, keys, names), []),
        ("DELETE old versions", delete_old_versions_sql(target_sql), version),
        ("overwrite REPLACE", replace_sql(target_sql, staging_sql, names), []),
    ]
    return tables, statements


def run_matrix() -> tuple[list[str], int, int]:
    """Check every combination; return (problems, refused, analyzed statements)."""
    problems: list[str] = []
    refused = 0
    tables: list = []
    pending: list[tuple[str, str, str, list]] = []
    seen: set[tuple[str, object]] = set()
    for index, (type_name, name, role) in enumerate(combinations()):
        stream = f"matrix_{index}"
        schema, keys = stream_of(type_name, name, role)
        label = f"{type_name} / {name[:20]!r} / {role}"
        try:
            columns, key_columns = plan_columns(stream, schema, keys)
        except InputError as exc:
            refused += 1
            text = str(exc)
            if stream not in text or name[:20] not in text:
                problems.append(f"{label}: refused without naming stream and field: {text}")
            continue
        more_tables, statements = statements_for(index, columns, key_columns)
        tables += more_tables
        for what, sql, parameters in statements:
            # REPLACE does not depend on the role, the version DELETE only on the table
            scope = {"MERGE": label, "overwrite REPLACE": (type_name, name)}.get(what, type_name)
            if (what, scope) not in seen:
                seen.add((what, scope))
                pending.append((label, what, sql, parameters))
    errors = check_statements(engine(), tables, [(sql, params) for _, _, sql, params in pending])
    for (label, what, sql, _), error in zip(pending, errors, strict=True):
        if error is not None:
            problems.append(f"{label}: {what} rejected by ZetaSQL: {error}\n{sql}")
    return problems, refused, len(pending)


def test_the_matrix_is_every_type_name_and_role():
    assert len(combinations()) == len(TYPES) * len(NAMES) * len(ROLES) == 1350


def test_every_combination_is_refused_up_front_or_accepted_by_zetasql():
    problems, refused, analyzed = run_matrix()
    assert analyzed > len(combinations()) - refused
    summary = f"{len(problems)} problems in {len(combinations())} combinations ({refused} refused)"
    assert not problems, summary + ":\n" + "\n".join(sorted({p.split("\n")[0] for p in problems}))


@pytest.mark.parametrize(("first", "second"), CASE_PAIRS)
def test_names_differing_only_in_case_are_refused_naming_both(first, second):
    schema = {
        "type": "object",
        "properties": {first: {"type": "string"}, second: {"type": "string"}},
    }
    with pytest.raises(InputError, match=f"stream 'cases'.*'{first}'.*'{second}'"):
        plan_columns("cases", schema, ())
