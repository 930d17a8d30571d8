"""Map a stream's JSON Schema to BigQuery columns, and plan the renames its property names need.

| JSON Schema                                | BigQuery                                     |
|--------------------------------------------|----------------------------------------------|
| integer                                    | INT64                                        |
| number                                     | FLOAT64; exact (below): NUMERIC, BIGNUMERIC  |
| boolean                                    | BOOL                                         |
| string / date-time / date / time           | STRING / TIMESTAMP / DATE / TIME             |
| object with properties                     | RECORD (fields mapped alike)                 |
| object without properties, unions, unknown | JSON                                         |
| array of X                                 | X, mode REPEATED (array of arrays: JSON)     |
| ["null", X], anyOf [X, null]               | X, NULLABLE                                  |

A `number` is exact when its schema hints a decimal (`multipleOf` < 1, format `decimal` or
`x-singer.decimal`, also on strings) or the `exact_numbers` setting says so: NUMERIC when its
scale (`multipleOf`, or `scale`) is at most 9 digits and its bounds, if any, within 10^29
(a plain `number` under `exact_numbers` too), BIGNUMERIC otherwise. Values reach it digit
for digit; a value beyond the column's range or scale is refused, naming the field.

Top-level properties listed in `required` whose type excludes null are REQUIRED; everything
else is NULLABLE, so later schemas can only relax, never tighten. BigQuery nests RECORDs at
most 15 levels deep: an object below that becomes a JSON column value, whole.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from google.cloud.bigquery import SchemaField

from target_bigquery_lite.errors import InputError
from target_bigquery_lite.identifiers import SOURCE_MARK, IdentifierError, column_name, shown

STRINGISH = frozenset({"STRING", "TIMESTAMP", "DATE", "TIME", "DATETIME"})
_STRING_FORMATS = {"date-time": "TIMESTAMP", "date": "DATE", "time": "TIME"}
DECIMAL_HINTS = frozenset({"decimal", "x-singer.decimal"})
EXACT_TYPES = frozenset({"NUMERIC", "BIGNUMERIC"})
NUMERIC_SCALE = 9
NUMERIC_BOUND = 10**29
_SCALARS = {"integer": "INT64", "boolean": "BOOL"}
MAX_RECORD_DEPTH = 15  # BigQuery: at most 15 levels of nested RECORD (STRUCT) types
MAX_UNION_DEPTH = 8

log = logging.getLogger("target_bigquery_lite")

# Every property of an object: its column name, and the same for its object value's properties.
NameTree = dict[str, tuple[str, "NameTree | None"]]
# A rename plan maps an incoming property name to (column name, plan for its object value),
# for the properties whose keys must change.
RenamePlan = dict[str, tuple[str, "RenamePlan | None"]]
Renamer = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class MappedSchema:
    """A stream's BigQuery columns and the column name of each property (nested too)."""

    fields: tuple[SchemaField, ...]
    names: NameTree

    @property
    def renamer(self) -> Renamer | None:
        """Renames record keys to the mapped column names (None: no key changes)."""
        return renamer_for(self.names, self.fields)


def renamer_for(names: NameTree, table_fields: tuple[SchemaField, ...]) -> Renamer | None:
    """Renames record keys to the table's own spelling of each column (None: no changes).

    BigQuery column names are case-insensitive, so a property `name` maps onto an existing
    column `Name`; its values must be staged under `Name`, or the load would drop them.
    """
    plan = _rename_plan(names, table_fields)
    return _make_renamer(plan) if plan else None


def _rename_plan(names: NameTree, fields: tuple[SchemaField, ...] | list) -> RenamePlan:
    spelled = {field.name.lower(): field for field in fields}
    plan: RenamePlan = {}
    for prop, (column, inside) in names.items():
        field = spelled.get(column.lower())
        final = field.name if field is not None else column
        sub = _rename_plan(inside, field.fields if field is not None else ()) if inside else {}
        if final != prop or sub:
            plan[prop] = (final, sub or None)
    return plan


def is_exact(node: dict[str, Any], exact_numbers: bool) -> bool:
    """Whether a `number` node maps to NUMERIC/BIGNUMERIC (see the module doc)."""
    step = node.get("multipleOf")
    hinted = is_number(step) and 0 < step < 1
    return hinted or exact_numbers or node.get("format") in DECIMAL_HINTS


def exact_type(node: dict[str, Any]) -> str:
    """NUMERIC if the node's scale and bounds fit it, else BIGNUMERIC."""
    step = node.get("multipleOf")
    if is_number(step) and 0 < step < 1:
        exponent = Decimal(repr(step)).normalize().as_tuple().exponent
        scale = -exponent if isinstance(exponent, int) else NUMERIC_SCALE + 1
    else:  # a decimal format or `exact_numbers`: NUMERIC unless the schema says more
        scale = node.get("scale", 0) if isinstance(node.get("scale"), int) else 0
    bounds = [abs(node[key]) for key in ("minimum", "maximum") if is_number(node.get(key))]
    if scale <= NUMERIC_SCALE and all(bound <= NUMERIC_BOUND for bound in bounds):
        return "NUMERIC"
    return "BIGNUMERIC"


def is_number(value: Any) -> bool:
    """A JSON number of the schema (booleans are ints in Python, not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def map_schema(schema: dict[str, Any], stream: str, *, exact_numbers: bool = False) -> MappedSchema:
    """Map a stream's top-level JSON Schema (an object with properties) to BigQuery.

    Raises:
        InputError: when the schema has no properties or two names collide after sanitizing.
    """
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise InputError(
            f"SCHEMA for stream '{shown(stream)}' has no properties: a BigQuery table needs columns"
        )
    mapper = _Mapper(schema, stream, exact_numbers)
    required = set(schema.get("required") or ())
    fields, names = mapper.object_fields(properties, required, path="", depth=0)
    return MappedSchema(tuple(fields), names)


class _Mapper:
    """Walks one schema; holds the root so local `$ref`s can be resolved."""

    def __init__(self, root: dict[str, Any], stream: str, exact_numbers: bool) -> None:
        self.root = root
        self.stream = stream
        self.exact_numbers = exact_numbers
        self.expanding: list[str] = []  # the `$ref`s being mapped, outermost first

    def object_fields(
        self, properties: dict[str, Any], required: set[str], path: str, depth: int
    ) -> tuple[list[SchemaField], NameTree]:
        """Map the properties of an object whose fields sit inside `depth` RECORDs."""
        fields: list[SchemaField] = []
        names: NameTree = {}
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
            field, inside = self.field(
                bq_name, prop, f"{path}{name}.", required=name in required, depth=depth
            )
            if bq_name != name:  # the column remembers the property it was folded from
                field = _described(field, f"{SOURCE_MARK}{name}")
            fields.append(field)
            names[name] = (bq_name, inside or None)
        return fields, names

    def field(
        self, name: str, prop: Any, path: str, *, required: bool, depth: int
    ) -> tuple[SchemaField, NameTree]:
        """Map one property inside `depth` RECORDs; `required` is only true at the top level."""
        ref = prop.get("$ref") if isinstance(prop, dict) else None
        if isinstance(ref, str):
            if ref in self.expanding:  # a recursive schema (a tree): the rest is one value
                log.info(
                    "stream '%s': property %s refers to itself (%s); it is stored as JSON",
                    shown(self.stream),
                    path.rstrip("."),
                    ref,
                )
                return SchemaField(name, "JSON", mode="NULLABLE"), {}
            self.expanding.append(ref)
            try:
                return self.field(name, self.resolve(prop), path, required=required, depth=depth)
            finally:
                self.expanding.pop()
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
                        shown(self.stream),
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
    ) -> tuple[SchemaField, NameTree]:
        items = self.resolve(prop.get("items"))
        if not isinstance(items, dict) or not items:
            return SchemaField(name, "JSON", mode="NULLABLE"), {}
        if any(variant.get("type") == "array" for variant in self.variants(items)[1]):
            return SchemaField(name, "JSON", mode="NULLABLE"), {}  # items that may be arrays
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

    def variants(self, prop: Any, depth: int = 0) -> tuple[bool, list[dict[str, Any]]]:
        """Split a property into (nullable, non-null single-type variants).

        `anyOf` inside `anyOf` deeper than a few levels (a union that refers to itself) is
        one variant of unknown type: JSON.
        """
        if not isinstance(prop, dict) or depth > MAX_UNION_DEPTH:
            return True, [{}]
        branches = prop.get("anyOf") or prop.get("oneOf")
        if isinstance(branches, list) and branches:
            nullable, variants = False, []
            for branch in branches:
                branch_nullable, branch_variants = self.variants(self.resolve(branch), depth + 1)
                nullable = nullable or branch_nullable
                variants.extend(branch_variants)
            return nullable, variants
        all_of = prop.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            return self.variants(self.resolve(all_of[0]), depth + 1)
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
        if types == {"INT64", "FLOAT64"}:
            return "FLOAT64"
        if types <= {"INT64", *EXACT_TYPES}:
            return "BIGNUMERIC" if "BIGNUMERIC" in types else "NUMERIC"
        return "JSON"

    def scalar_type(self, variant: dict[str, Any]) -> str:
        kind = variant.get("type")
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "number":
            return exact_type(variant) if is_exact(variant, self.exact_numbers) else "FLOAT64"
        if kind == "string":
            fmt = variant.get("format")
            return (
                exact_type(variant) if fmt in DECIMAL_HINTS else _STRING_FORMATS.get(fmt, "STRING")
            )
        return "JSON"


def _described(field: SchemaField, description: str) -> SchemaField:
    api = copy.deepcopy(field.to_api_repr())
    api["description"] = description
    return SchemaField.from_api_repr(api)


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
