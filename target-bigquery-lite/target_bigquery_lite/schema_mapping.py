"""Map a stream's JSON Schema to BigQuery columns, and plan the renames its property names need.

| JSON Schema                                | BigQuery                                     |
|--------------------------------------------|----------------------------------------------|
| integer                                    | INT64                                        |
| number                                     | FLOAT64 (NUMERIC: multipleOf < 1, decimal)   |
| boolean                                    | BOOL                                         |
| string / date-time / date / time           | STRING / TIMESTAMP / DATE / TIME             |
| object with properties                     | RECORD (fields mapped alike)                 |
| object without properties, unions, unknown | JSON                                         |
| array of X                                 | X, mode REPEATED (array of arrays: JSON)     |
| ["null", X], anyOf [X, null]               | X, NULLABLE                                  |

Top-level properties listed in `required` whose type excludes null are REQUIRED; everything
else is NULLABLE, so later schemas can only relax, never tighten. BigQuery nests RECORDs at
most 15 levels deep: an object below that becomes a JSON column value, whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.cloud.bigquery import SchemaField

from target_bigquery_lite.errors import InputError
from target_bigquery_lite.identifiers import IdentifierError, column_name

STRINGISH = frozenset({"STRING", "TIMESTAMP", "DATE", "TIME", "DATETIME"})
_STRING_FORMATS = {"date-time": "TIMESTAMP", "date": "DATE", "time": "TIME"}
_DECIMAL_FORMATS = frozenset({"decimal", "x-singer.decimal"})
_SCALARS = {"integer": "INT64", "boolean": "BOOL"}
MAX_RECORD_DEPTH = 15  # BigQuery: at most 15 levels of nested RECORD (STRUCT) types

log = logging.getLogger("target_bigquery_lite")

# A rename plan maps an incoming property name to (BigQuery name, plan for its object value).
RenamePlan = dict[str, tuple[str, "RenamePlan | None"]]
Renamer = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class MappedSchema:
    """A stream's BigQuery columns and how to rename record keys to match them."""

    fields: tuple[SchemaField, ...]
    renamer: Renamer | None


def map_schema(schema: dict[str, Any], stream: str) -> MappedSchema:
    """Map a stream's top-level JSON Schema (an object with properties) to BigQuery.

    Raises:
        InputError: when the schema has no properties or two names collide after sanitizing.
    """
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise InputError(
            f"SCHEMA for stream '{stream}' has no properties: a BigQuery table needs columns"
        )
    mapper = _Mapper(schema, stream)
    required = set(schema.get("required") or ())
    fields, plan = mapper.object_fields(properties, required, path="", depth=0)
    return MappedSchema(tuple(fields), _make_renamer(plan) if plan else None)


class _Mapper:
    """Walks one schema; holds the root so local `$ref`s can be resolved."""

    def __init__(self, root: dict[str, Any], stream: str) -> None:
        self.root = root
        self.stream = stream

    def object_fields(
        self, properties: dict[str, Any], required: set[str], path: str, depth: int
    ) -> tuple[list[SchemaField], RenamePlan]:
        """Map the properties of an object whose fields sit inside `depth` RECORDs."""
        fields: list[SchemaField] = []
        plan: RenamePlan = {}
        seen: dict[str, str] = {}
        for name, prop in properties.items():
            try:
                bq_name = column_name(name)
            except IdentifierError as exc:
                raise InputError(
                    f"stream '{self.stream}': property {path}{name!r}: {exc}"
                ) from None
            clash = seen.get(bq_name.lower())
            if clash is not None:
                raise InputError(
                    f"stream '{self.stream}': properties {path}{clash!r} and {path}{name!r} both "
                    f"become BigQuery column '{bq_name}' (names are case-insensitive)"
                )
            seen[bq_name.lower()] = name
            field, sub_plan = self.field(
                bq_name, prop, f"{path}{name}.", required=name in required, depth=depth
            )
            fields.append(field)
            if bq_name != name or sub_plan:
                plan[name] = (bq_name, sub_plan or None)
        return fields, plan

    def field(
        self, name: str, prop: Any, path: str, *, required: bool, depth: int
    ) -> tuple[SchemaField, RenamePlan]:
        """Map one property inside `depth` RECORDs; `required` is only true at the top level."""
        prop = self.resolve(prop)
        nullable, variants = self.variants(prop)
        if not variants:  # only "null", or nothing known: any JSON value
            nullable, variants = True, [{}]
        if len(variants) == 1:
            variant = variants[0]
            kind = variant.get("type")
            if kind == "array":
                return self.array(name, variant, path, depth)
            if kind == "object" and variant.get("properties"):
                if depth >= MAX_RECORD_DEPTH:
                    log.warning(
                        "stream '%s': property %s is nested deeper than BigQuery's %d RECORD "
                        "levels; it is stored as one JSON value",
                        self.stream,
                        path.rstrip("."),
                        MAX_RECORD_DEPTH,
                    )
                    return SchemaField(name, "JSON", mode="NULLABLE"), {}
                fields, plan = self.object_fields(variant["properties"], set(), path, depth + 1)
                return SchemaField(name, "RECORD", mode="NULLABLE", fields=fields), plan
        bq_type = self.combined_type(variants)
        mode = "REQUIRED" if required and not nullable else "NULLABLE"
        return SchemaField(name, bq_type, mode=mode), {}

    def array(
        self, name: str, prop: dict[str, Any], path: str, depth: int
    ) -> tuple[SchemaField, RenamePlan]:
        items = self.resolve(prop.get("items"))
        if not isinstance(items, dict) or not items:
            return SchemaField(name, "JSON", mode="NULLABLE"), {}
        item, plan = self.field(name, items, path, required=False, depth=depth)
        if item.mode == "REPEATED":  # BigQuery has no arrays of arrays
            return SchemaField(name, "JSON", mode="NULLABLE"), {}
        return SchemaField(name, item.field_type, mode="REPEATED", fields=item.fields), plan

    def resolve(self, prop: Any) -> Any:
        """Follow local `$ref`s (`#/definitions/x`, `#/$defs/x`); anything else maps to JSON."""
        for _ in range(32):
            if not isinstance(prop, dict) or "$ref" not in prop:
                return prop
            ref = prop["$ref"]
            target: Any = self.root
            if not isinstance(ref, str) or not ref.startswith("#/"):
                return {}
            for part in ref[2:].split("/"):
                target = target.get(part) if isinstance(target, dict) else None
            prop = target if isinstance(target, dict) else {}
        return {}

    def variants(self, prop: Any) -> tuple[bool, list[dict[str, Any]]]:
        """Split a property into (nullable, non-null single-type variants)."""
        if not isinstance(prop, dict):
            return True, [{}]
        branches = prop.get("anyOf") or prop.get("oneOf")
        if isinstance(branches, list) and branches:
            nullable, variants = False, []
            for branch in branches:
                branch_nullable, branch_variants = self.variants(self.resolve(branch))
                nullable = nullable or branch_nullable
                variants.extend(branch_variants)
            return nullable, variants
        all_of = prop.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            return self.variants(self.resolve(all_of[0]))
        kinds = prop.get("type")
        if kinds is None:
            kinds = "object" if "properties" in prop else None
        if isinstance(kinds, str):
            kinds = [kinds]
        if not isinstance(kinds, list):
            return True, [{}]
        non_null = [kind for kind in kinds if kind != "null"]
        return len(non_null) < len(kinds), [{**prop, "type": kind} for kind in non_null]

    def combined_type(self, variants: list[dict[str, Any]]) -> str:
        """One BigQuery type for the variants: a shared type, STRING, FLOAT64, NUMERIC or JSON."""
        types = {self.scalar_type(variant) for variant in variants}
        if len(types) == 1:
            return types.pop()
        if types <= STRINGISH:
            return "STRING"
        if types in ({"INT64", "FLOAT64"}, {"INT64", "NUMERIC"}):
            return "FLOAT64" if "FLOAT64" in types else "NUMERIC"
        return "JSON"

    def scalar_type(self, variant: dict[str, Any]) -> str:
        kind = variant.get("type")
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "number":
            multiple = variant.get("multipleOf")
            decimal = isinstance(multiple, int | float) and 0 < multiple < 1
            return "NUMERIC" if decimal or variant.get("format") in _DECIMAL_FORMATS else "FLOAT64"
        if kind == "string":
            fmt = variant.get("format")
            return "NUMERIC" if fmt in _DECIMAL_FORMATS else _STRING_FORMATS.get(fmt, "STRING")
        return "JSON"


def _make_renamer(plan: RenamePlan) -> Renamer:
    """A function that copies a record with its keys renamed as the plan says (nested too)."""

    def rename(value: Any, plan: RenamePlan) -> Any:
        if isinstance(value, list):
            return [rename(item, plan) for item in value]
        if not isinstance(value, dict):
            return value
        renamed = {}
        for key, item in value.items():
            target = plan.get(key)
            if target is None:
                renamed[key] = item
            else:
                new_key, sub_plan = target
                renamed[new_key] = rename(item, sub_plan) if sub_plan else item
        return renamed

    return lambda record: rename(record, plan)
