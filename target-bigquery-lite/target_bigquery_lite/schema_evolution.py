"""Reconcile a stream's wanted columns with its existing table: add, relax, or refuse clearly.

Allowed without touching data: new columns (added as NULLABLE, or REPEATED), new sub-fields
of a RECORD, REQUIRED relaxed to NULLABLE, and a narrower incoming type where the existing
column already holds it (INT64 into FLOAT64/NUMERIC, a date into STRING, anything into
JSON). Anything else is an incompatible change and fails with a message naming the column,
the table's type and the new one, because silently retyping a column would lose data.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.cloud.bigquery import SchemaField

from target_bigquery_lite.errors import SchemaChangeError

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


def reconcile(
    existing: tuple[SchemaField, ...], wanted: tuple[SchemaField, ...], table: str
) -> Evolution:
    """The table's fields once every wanted column fits, plus a description of each change.

    Raises:
        SchemaChangeError: when a wanted column cannot be stored in the existing one.
    """
    changes: list[str] = []
    fields = _merge_fields(
        [canonical(f) for f in existing], [canonical(f) for f in wanted], table, "", changes
    )
    return Evolution(tuple(fields), tuple(changes))


def load_fields(evolved: tuple[SchemaField, ...], wanted: tuple[SchemaField, ...]) -> tuple:
    """The evolved table's definitions of the wanted columns, in the wanted order.

    A staging table built from these has exactly the final table's types (RECORDs with all
    their sub-fields), so MERGE assignments type-check, while listing only the batch's columns.
    """
    by_name = {field.name.lower(): field for field in evolved}
    return tuple(by_name[field.name.lower()] for field in wanted)


def _merge_fields(
    existing: list[SchemaField],
    wanted: list[SchemaField],
    table: str,
    path: str,
    changes: list[str],
) -> list[SchemaField]:
    wanted_names = {field.name.lower() for field in wanted}
    by_name = {field.name.lower(): field for field in existing}
    result = []
    for field in existing:
        if field.name.lower() not in wanted_names and field.mode == "REQUIRED":
            changes.append(f"relax {path}{field.name} to NULLABLE (no longer sent)")
            result.append(_with_mode(field, "NULLABLE"))
        else:
            result.append(field)
    positions = {field.name.lower(): index for index, field in enumerate(result)}
    for field in wanted:
        current = by_name.get(field.name.lower())
        if current is None:
            mode = "REPEATED" if field.mode == "REPEATED" else "NULLABLE"
            result.append(_with_mode(field, mode))
            changes.append(f"add column {path}{field.name} {field.field_type} {mode}")
            continue
        index = positions[field.name.lower()]
        result[index] = _merge_field(result[index], field, table, path, changes)
    return result


def _merge_field(
    current: SchemaField, field: SchemaField, table: str, path: str, changes: list[str]
) -> SchemaField:
    name = f"{path}{current.name}"
    if current.field_type == "JSON" and current.mode != "REPEATED":
        return current  # a JSON column holds any value, arrays and objects included
    if (current.mode == "REPEATED") != (field.mode == "REPEATED"):
        raise _incompatible(table, name, current, field)
    if current.field_type == "RECORD" and field.field_type == "RECORD":
        sub = _merge_fields(list(current.fields), list(field.fields), table, f"{name}.", changes)
        return SchemaField(
            current.name, "RECORD", mode=_relaxed(current, field, changes, name), fields=sub
        )
    if current.field_type != field.field_type and (
        (current.field_type, field.field_type) not in _HOLDS
    ):
        raise _incompatible(table, name, current, field)
    return _with_mode(current, _relaxed(current, field, changes, name))


def _relaxed(current: SchemaField, field: SchemaField, changes: list[str], name: str) -> str:
    if current.mode == "REQUIRED" and field.mode != "REQUIRED":
        changes.append(f"relax {name} to NULLABLE")
        return "NULLABLE"
    return current.mode


def _with_mode(field: SchemaField, mode: str) -> SchemaField:
    return SchemaField(field.name, field.field_type, mode=mode, fields=field.fields)


def _incompatible(table: str, name: str, current: SchemaField, field: SchemaField) -> Exception:
    return SchemaChangeError(
        f"incompatible schema change for table {table}: column {name} is "
        f"{current.field_type} {current.mode} in BigQuery but the stream's SCHEMA now maps it "
        f"to {field.field_type} {field.mode}; migrate the column or load into another table"
    )
