"""Reconcile a stream's wanted columns with its existing table: add, relax, or refuse clearly.

Allowed without touching data: new columns (added as NULLABLE, or REPEATED), new sub-fields
of a RECORD, REQUIRED relaxed to NULLABLE, and a narrower incoming type where the existing
column already holds it (INT64 into FLOAT64/NUMERIC, a date into STRING, anything into
JSON). Anything else is an incompatible change and fails with a message naming the column,
the table's type and the new one, because silently retyping a column would lose data.

Existing columns are kept as BigQuery returned them, with their descriptions, policy tags,
default values, collation and type parameters: an update only adds or relaxes. Names match
case-insensitively, as BigQuery's do, so a property renamed only by case keeps its column
(and is staged with the column's own spelling). A column whose name was folded from its
property's (see `identifiers`) records that property in its description (`SOURCE_MARK`);
a later property that folds onto it is refused instead of writing into it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from google.cloud.bigquery import SchemaField

from target_bigquery_lite.errors import SchemaChangeError
from target_bigquery_lite.identifiers import SOURCE_MARK, shown

# Legacy spellings the API returns -> GoogleSQL names used everywhere in this package.
_CANONICAL = {
    "INTEGER": "INT64",
    "FLOAT": "FLOAT64",
    "BOOLEAN": "BOOL",
    "STRUCT": "RECORD",
    "BIGDECIMAL": "BIGNUMERIC",
}
# (existing column type, incoming type) pairs the existing column can hold as it is.
_HOLDS = frozenset(
    {
        ("FLOAT64", "INT64"),
        ("NUMERIC", "INT64"),
        ("BIGNUMERIC", "INT64"),
        ("BIGNUMERIC", "NUMERIC"),
        ("STRING", "TIMESTAMP"),
        ("STRING", "DATE"),
        ("STRING", "TIME"),
        ("STRING", "DATETIME"),
    }
)
# Field properties that describe a column to readers, not to a load job or a staging table.
_DESCRIPTIVE = ("description", "policyTags", "defaultValueExpression", "dataPolicies")


@dataclass(frozen=True)
class _Walk:
    """What every step of one reconciliation needs: the table, its changes, its ownership."""

    table: str
    changes: list[str]
    managed: bool


@dataclass(frozen=True)
class Evolution:
    """The table's fields after reconciling, and the changes (empty: nothing to update)."""

    fields: tuple[SchemaField, ...]
    changes: tuple[str, ...]


def canonical_type(field_type: str) -> str:
    """GoogleSQL spelling of a BigQuery type name (`INTEGER` -> `INT64`)."""
    upper = field_type.upper()
    return _CANONICAL.get(upper, upper)


def canonical(field: SchemaField) -> SchemaField:
    """A copy of a field with canonical type names, recursively, and only what we compare."""
    return SchemaField(
        field.name,
        canonical_type(field.field_type),
        mode=(field.mode or "NULLABLE").upper(),
        fields=[canonical(sub) for sub in field.fields],
    )


def source_of(field: SchemaField) -> str | None:
    """The property a column records in its description (see `SOURCE_MARK`), if any."""
    description = field.description or ""
    return description[len(SOURCE_MARK) :] if description.startswith(SOURCE_MARK) else None


def plain(field: SchemaField) -> SchemaField:
    """The field without descriptions and policy tags: for load jobs and staging tables."""
    api = copy.deepcopy(field.to_api_repr())  # the client returns its own dict, not a copy
    for key in _DESCRIPTIVE:
        api.pop(key, None)
    if field.fields:
        api["fields"] = [plain(sub).to_api_repr() for sub in field.fields]
    return SchemaField.from_api_repr(api)


def reconcile(
    existing: tuple[SchemaField, ...],
    wanted: tuple[SchemaField, ...],
    table: str,
    *,
    managed: bool = True,
) -> Evolution:
    """The table's fields once every wanted column fits, plus a description of each change.

    `managed`: the table was created by this target (it carries its stream label), so a
    column without a recorded source was made for the property of its own name. Otherwise
    (a table from an earlier version, or made by hand) sources are adopted where unknown.

    Raises:
        SchemaChangeError: when a wanted column cannot be stored in the existing one, or
            belongs to another property.
    """
    walk = _Walk(table, [], managed)
    fields = _merge_fields(list(existing), list(wanted), "", walk)
    return Evolution(tuple(fields), tuple(walk.changes))


def load_fields(evolved: tuple[SchemaField, ...], wanted: tuple[SchemaField, ...]) -> tuple:
    """The evolved table's definitions of the wanted columns, in the wanted order.

    A staging table built from these has exactly the final table's types (RECORDs with all
    their sub-fields, type parameters), so MERGE assignments type-check, while listing only
    the batch's columns; descriptions and policy tags stay on the final table.
    """
    by_name = {field.name.lower(): field for field in evolved}
    return tuple(plain(by_name[field.name.lower()]) for field in wanted)


def _merge_fields(
    existing: list[SchemaField], wanted: list[SchemaField], path: str, walk: _Walk
) -> list[SchemaField]:
    wanted_names = {field.name.lower() for field in wanted}
    by_name = {field.name.lower(): field for field in existing}
    result = []
    for field in existing:
        if field.name.lower() not in wanted_names and _mode(field) == "REQUIRED":
            walk.changes.append(f"relax {path}{field.name} to NULLABLE (no longer sent)")
            result.append(_with(field, mode="NULLABLE"))
        else:
            result.append(field)
    positions = {field.name.lower(): index for index, field in enumerate(result)}
    for field in wanted:
        current = by_name.get(field.name.lower())
        if current is None:
            mode = "REPEATED" if field.mode == "REPEATED" else "NULLABLE"
            result.append(_with(field, mode=mode))
            walk.changes.append(f"add column {path}{field.name} {field.field_type} {mode}")
            continue
        index = positions[field.name.lower()]
        result[index] = _merge_field(result[index], field, path, walk)
    return result


def _merge_field(current: SchemaField, field: SchemaField, path: str, walk: _Walk) -> SchemaField:
    name = f"{path}{current.name}"
    current = _check_source(current, field, name, walk)
    kind, wanted_kind = canonical_type(current.field_type), canonical_type(field.field_type)
    mode = _mode(current)
    if kind == "JSON" and mode != "REPEATED":
        return current  # a JSON column holds any value, arrays and objects included
    if (mode == "REPEATED") != (field.mode == "REPEATED"):
        raise _incompatible(walk.table, name, current, field)
    if kind == "RECORD" and wanted_kind == "RECORD":
        sub = _merge_fields(list(current.fields), list(field.fields), f"{name}.", walk)
        return _with(current, mode=_relaxed(current, field, walk.changes, name), fields=sub)
    if kind != wanted_kind and (kind, wanted_kind) not in _HOLDS:
        raise _incompatible(walk.table, name, current, field)
    relaxed = _relaxed(current, field, walk.changes, name)
    return current if relaxed == mode else _with(current, mode=relaxed)


def _check_source(current: SchemaField, field: SchemaField, name: str, walk: _Walk) -> SchemaField:
    """Refuse a property that folds onto another property's column; adopt unknown sources."""
    wanted = source_of(field) or field.name
    recorded = source_of(current)
    if recorded is None and walk.managed:
        recorded = current.name
    if recorded is not None and recorded.casefold() != wanted.casefold():
        raise SchemaChangeError(
            f"table {walk.table}: property {shown(wanted)!r} maps to column {name}, which holds "
            f"property {shown(recorded)!r} (their names differ only in characters a column "
            "name cannot hold); rename one of them, e.g. with a stream map"
        )
    if recorded is None and source_of(field) is not None and not current.description:
        walk.changes.append(f"record that column {name} holds property {shown(wanted)!r}")
        return _with(current, description=field.description)
    return current


def _mode(field: SchemaField) -> str:
    return (field.mode or "NULLABLE").upper()


def _relaxed(current: SchemaField, field: SchemaField, changes: list[str], name: str) -> str:
    if _mode(current) == "REQUIRED" and field.mode != "REQUIRED":
        changes.append(f"relax {name} to NULLABLE")
        return "NULLABLE"
    return _mode(current)


def _with(
    field: SchemaField,
    *,
    mode: str | None = None,
    fields: list[SchemaField] | None = None,
    description: str | None = None,
) -> SchemaField:
    """A copy of `field` with every property it has, and the given ones changed."""
    api = copy.deepcopy(field.to_api_repr())  # the client returns its own dict, not a copy
    if mode is not None:
        api["mode"] = mode
    if fields is not None:
        api["fields"] = [sub.to_api_repr() for sub in fields]
    if description is not None:
        api["description"] = description
    return SchemaField.from_api_repr(api)


def _incompatible(table: str, name: str, current: SchemaField, field: SchemaField) -> Exception:
    return SchemaChangeError(
        f"incompatible schema change for table {table}: column {name} is "
        f"{canonical_type(current.field_type)} {_mode(current)} in BigQuery but the stream's "
        f"SCHEMA now maps it to {field.field_type} {field.mode}; migrate the column or load "
        "into another table"
    )
