"""Record validation: a compiled validator on the hot path, `jsonschema` for precise messages.

Measured here on a 10-field flows record: `jsonschema` 35 us, `fastjsonschema` (the schema
compiled to Python once per SCHEMA message) 1.4 us, and `msgspec.convert` into a Struct
built from the schema 0.23 us. So flat schemas of scalar properties (the common case: what
most taps send) are checked by msgspec; anything it rejects is re-checked by fastjsonschema,
which has the final word (msgspec is stricter in corners, e.g. `1.0` for an integer), so
the result is exactly JSON Schema's. BATCH rows of such schemas are checked a whole block
at a time, by a stricter Struct (`block_decoder`). Other schemas use fastjsonschema alone.
Only when a record fails does `jsonschema` run, to name the field and the rule. Formats
(`date-time`, ...) are not asserted, as in `jsonschema`'s default: BigQuery parses them at
load time and accepts more spellings than RFC 3339.

On top of the stream's schema, records are held to what BigQuery can store
(`with_bigquery_limits`): integers within INT64, and TIMESTAMP/DATE values starting with a
date in years 0001-9999. BigQuery would reject such a row at load time with only a summary
error (and the emulator loads some of them silently), so they fail here instead, naming the
field. Schemas may only `$ref` into themselves: a remote `$ref` would make the validator
fetch a URL named by the tap.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Collection, Iterator
from typing import Annotated, Any

import fastjsonschema
import jsonschema
import msgspec
from jsonschema.exceptions import best_match

from target_bigquery_lite.errors import InputError
from target_bigquery_lite.identifiers import shown
from target_bigquery_lite.schema_mapping import is_exact

Validator = Callable[[dict[str, Any]], Any]
ValidationFailure = fastjsonschema.JsonSchemaValueException | jsonschema.ValidationError
VALIDATION_ERRORS = (fastjsonschema.JsonSchemaValueException, jsonschema.ValidationError)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# The date part BigQuery needs at the start of a TIMESTAMP or DATE value: year 0001-9999,
# then month and day. The rest of the value is left to BigQuery's own parser.
DATE_PATTERN = r"^(?!0000)[0-9]{4}-(0?[1-9]|1[0-2])-(0?[1-9]|[12][0-9]|3[01])(?![0-9])"
DATE_FORMATS = frozenset({"date-time", "date"})
# Keywords whose values are subschemas: dicts of them, lists of them, or one of them.
_SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "$defs", "dependencies")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems", "items")
_EXCLUSIVE = {"exclusiveMinimum": "minimum", "exclusiveMaximum": "maximum"}
# Keywords of Drafts 2019-09 and 2020-12 that Draft 7 lacks or reads differently: a schema
# using none of them means the same as Draft 7, so the compiled Draft-7 validator checks it.
_NEWER_KEYWORDS = frozenset(
    {"prefixItems", "dependentRequired", "dependentSchemas", "unevaluatedProperties",
     "unevaluatedItems", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef",
     "$recursiveAnchor", "minContains", "maxContains", "contentSchema"}
)  # fmt: skip
_DRAFT7_ALIKE = frozenset(
    {jsonschema.Draft4Validator, jsonschema.Draft6Validator, jsonschema.Draft7Validator}
)
_SCHEMA_ONES = ("items", "additionalProperties", "additionalItems", "contains", "not", "if",
                "then", "else", "propertyNames")  # fmt: skip

log = logging.getLogger("target_bigquery_lite")


def dialect(schema: dict[str, Any]) -> type[jsonschema.protocols.Validator]:
    """The JSON Schema draft a tap wrote.

    Its `$schema`, else Draft 4 if the schema uses Draft 4's boolean `exclusiveMinimum`/
    `exclusiveMaximum` (as singer-python taps write), else Draft 7.
    """
    if isinstance(schema.get("$schema"), str):
        return jsonschema.validators.validator_for(schema, jsonschema.Draft7Validator)
    if any(_draft4_exclusive(node) for node in _schema_nodes(schema)):
        return jsonschema.Draft4Validator
    return jsonschema.Draft7Validator


def _draft4_exclusive(node: dict[str, Any]) -> bool:
    return any(isinstance(node.get(key), bool) for key in _EXCLUSIVE)


def check_schema(schema: Any, stream: str) -> None:
    """Check that a SCHEMA message holds a valid JSON Schema object, of any draft 4 to 2020-12.

    Raises:
        InputError: naming the stream and what is wrong with the schema.
    """
    if not isinstance(schema, dict):
        raise InputError(f"SCHEMA for stream '{shown(stream)}' is not a JSON object")
    try:
        dialect(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "(root)"
        raise InputError(
            f"SCHEMA for stream '{shown(stream)}' is not a valid JSON Schema at {where}: "
            f"{exc.message}"
        ) from None
    for node in _schema_nodes(schema):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            raise InputError(
                f"SCHEMA for stream '{shown(stream)}': $ref {ref[:200]!r} is not a "
                "reference into the schema itself ('#/...'); remote schemas are never fetched"
            )


def _subschemas(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The schemas directly inside `node` (not values of `const`, `enum`, `default`, ...)."""
    for key in _SCHEMA_MAPS:
        value = node.get(key)
        if isinstance(value, dict):
            yield from (sub for sub in value.values() if isinstance(sub, dict))
    for key in _SCHEMA_LISTS:
        value = node.get(key)
        if isinstance(value, list):
            yield from (sub for sub in value if isinstance(sub, dict))
    for key in _SCHEMA_ONES:
        value = node.get(key)
        if isinstance(value, dict):
            yield value


def _schema_nodes(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every schema in `schema`, itself included, without recursion (schemas may nest deeply)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(_subschemas(node))


def _only_type(node: dict[str, Any]) -> str | None:
    """The node's one non-null JSON type, if it has exactly one."""
    kinds = node.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list):
        return None
    non_null = [kind for kind in kinds if kind != "null"]
    return non_null[0] if len(non_null) == 1 else None


def with_bigquery_limits(schema: dict[str, Any], *, exact_numbers: bool = False) -> dict[str, Any]:
    """A copy of `schema` for checking records: in Draft 7's form, held to BigQuery's limits.

    Draft 4's boolean `exclusiveMinimum`/`exclusiveMaximum` become Draft 7's numbers.
    Integer nodes get INT64's bounds (tighter bounds of the schema itself are kept);
    `date-time` and `date` strings must start with a date BigQuery accepts (`DATE_PATTERN`),
    unless the schema has its own `pattern` there. Array items may be null: BigQuery arrays
    cannot hold NULL, so such elements are dropped when staged (`values`), whatever the tap
    declared. A json/jsonb property takes scalars (`_allow_json_scalars`). Exact numbers
    (`is_exact`) arrive as `Decimal`s, which a float `multipleOf` cannot divide: `values`
    checks a top-level property's step exactly instead.
    """
    limited = copy.deepcopy(schema)
    draft4 = dialect(schema) is jsonschema.Draft4Validator
    if draft4 or dialect(schema) in _DRAFT7_ALIKE:
        limited.pop("$schema", None)
    for node in _schema_nodes(limited):
        if draft4:
            _to_draft7_exclusives(node)
        kind = _only_type(node)
        if kind == "integer":
            low, high = node.get("minimum"), node.get("maximum")
            node["minimum"] = max(low, INT64_MIN) if isinstance(low, int | float) else INT64_MIN
            node["maximum"] = min(high, INT64_MAX) if isinstance(high, int | float) else INT64_MAX
        elif kind == "string" and node.get("format") in DATE_FORMATS and "pattern" not in node:
            node["pattern"] = DATE_PATTERN
        elif kind == "number" and is_exact(node, exact_numbers):
            node.pop("multipleOf", None)  # checked exactly on the Decimal (`values`)
        items = node.get("items")
        if isinstance(items, dict):
            _allow_null(items)
        _allow_json_scalars(node)
    return limited


def _allow_json_scalars(node: dict[str, Any]) -> None:
    """`["object", "array"]` without more (singer-python's json/jsonb) also takes scalars.

    Such a property is a JSON column, and Postgres' json holds scalars too; the tap's
    declaration would fail the whole run at the first bare string.
    """
    kinds = node.get("type")
    if not isinstance(kinds, list) or {k for k in kinds if k != "null"} != {"object", "array"}:
        return
    if not {"properties", "items", "additionalProperties"} & set(node):
        node["type"] = [*kinds, "string", "number", "boolean"]


def _to_draft7_exclusives(node: dict[str, Any]) -> None:
    for exclusive, bound in _EXCLUSIVE.items():
        flag = node.get(exclusive)
        if isinstance(flag, bool):
            del node[exclusive]
            if flag and bound in node:
                node[exclusive] = node.pop(bound)


def _allow_null(items: dict[str, Any]) -> None:
    kinds = items.get("type")
    if isinstance(kinds, str) and kinds != "null":
        items["type"] = [kinds, "null"]
    elif isinstance(kinds, list) and "null" not in kinds:
        items["type"] = [*kinds, "null"]
    elif kinds is None and isinstance(items.get("anyOf"), list):
        items["anyOf"] = [*items["anyOf"], {"type": "null"}]


def compile_validator(
    schema: dict[str, Any], stream: str, *, exact_numbers: bool = False
) -> Validator:
    """The fastest exact validator for the schema and BigQuery's limits (see the module doc).

    Schemas of Drafts 2019-09 and 2020-12 that use keywords Draft 7 lacks are checked by
    `jsonschema` for their own draft (slower, but never looser).
    """
    limited = with_bigquery_limits(schema, exact_numbers=exact_numbers)
    if "$schema" in limited and any(set(node) & _NEWER_KEYWORDS for node in _schema_nodes(limited)):
        return dialect(limited)(limited).validate
    limited.pop("$schema", None)
    try:
        compiled = fastjsonschema.compile(limited, use_default=False, use_formats=False)
    except (fastjsonschema.JsonSchemaDefinitionException, ValueError, TypeError) as exc:
        log.warning("stream '%s': using the slower jsonschema validator (%s)", shown(stream), exc)
        return jsonschema.Draft7Validator(limited).validate
    struct = flat_struct(schema)
    if struct is None:
        return compiled
    convert, rejected = msgspec.convert, msgspec.ValidationError

    def validate(record: dict[str, Any]) -> None:
        try:
            convert(record, struct)
        except rejected:
            compiled(record)  # raises if JSON Schema agrees that the record is invalid

    return validate


_SCALARS: dict[str, Any] = {
    "integer": Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)],
    "number": float,
    "string": str,
    "boolean": bool,
}
_DATE_STRING = Annotated[str, msgspec.Meta(pattern=DATE_PATTERN)]
# A Struct field for the target's own arrival sequence: no JSON value is >= 1 and <= 0, so
# a row that tries to fill it is refused (and goes row by row, where it is overwritten).
SEQUENCE_FIELD = "arrival_sequence"
_NO_INPUT = Annotated[int, msgspec.Meta(ge=1, le=0)]
_FLAT_SCHEMA_KEYS = frozenset(
    {"type", "properties", "required", "additionalProperties", "description", "title",
     "$schema", "$id", "$comment"}
)  # fmt: skip
_FLAT_PROPERTY_KEYS = frozenset(
    {"type", "format", "description", "title", "default", "examples", "$comment",
     "readOnly", "writeOnly", "deprecated"}
)  # fmt: skip


def flat_struct(
    schema: dict[str, Any],
    *,
    strict: bool = False,
    keys: Collection[str] = (),
    sequence: str | None = None,
) -> type[msgspec.Struct] | None:
    """A msgspec Struct accepting exactly the schema's records, if the schema is flat.

    Flat: an object whose properties each have one scalar type, optionally with null, and no
    validation keywords beyond `type`, `required` and a boolean `additionalProperties`. The
    Struct applies BigQuery's limits as `with_bigquery_limits` does (INT64 range, dates).

    `strict` (for `block_decoder`) also refuses unknown fields and makes `keys` required and
    non-null; `sequence` adds that column as field `SEQUENCE_FIELD`, which no input can fill.
    """
    properties = schema.get("properties")
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if (
        not set(schema) <= _FLAT_SCHEMA_KEYS
        or schema.get("type", "object") not in ("object", ["object"])
        or not isinstance(properties, dict)
        or not properties
        or not isinstance(extra, bool)
        or not isinstance(required, list)
        or not set(required) <= set(properties)
    ):
        return None
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for index, (name, prop) in enumerate(properties.items()):
        kinds = prop.get("type") if isinstance(prop, dict) else None
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not isinstance(kinds, list) or not set(prop) <= _FLAT_PROPERTY_KEYS:
            return None
        scalars = [_SCALARS.get(kind) for kind in kinds if kind != "null"]
        if len(scalars) != 1 or scalars[0] is None:
            return None
        scalar = scalars[0]
        if scalar is str and prop.get("format") in DATE_FORMATS:
            scalar = _DATE_STRING
        key = strict and name in keys
        annotation: Any = scalar | None if "null" in kinds and not key else scalar
        field = f"f{index}"
        needed = name in required or key
        fields.append((field, annotation) if needed else (field, annotation, None))
    rename = {f"f{index}": name for index, name in enumerate(properties)}
    fields.sort(key=lambda field: len(field) == 3)  # msgspec: required fields first
    if sequence is not None:
        fields.append((SEQUENCE_FIELD, _NO_INPUT, 0))
        rename[SEQUENCE_FIELD] = sequence
    return msgspec.defstruct(
        "Record",
        fields,
        rename=rename,
        forbid_unknown_fields=strict or not extra,
        omit_defaults=strict,  # re-encoded rows: absent or null, either way a NULL
        gc=False,  # scalar fields only: no reference cycles, and decoding many is faster
    )


def block_decoder(
    schema: dict[str, Any], keys: Collection[str], sequence: str | None
) -> msgspec.json.Decoder | None:
    """A decoder that checks a whole block of BATCH rows at once, if the schema is flat.

    Its Struct is the validator's (`flat_struct`) made stricter, so that every row it accepts
    is one the validator accepts, unchanged: unknown fields are refused (msgspec would skip
    them unchecked, invalid UTF-8 included, and the row path stages them), and the merge
    keys `keys` must be present and non-null (what `Stream.stage` checks). msgspec refuses
    all that JSON Schema refuses here, and more (`1.0` for an integer, NaN, lone surrogates,
    numbers beyond a double), so a refused block only needs the row path for the verdict.
    Accepted rows are staged re-encoded from the Struct (`sequence`, if given, is the column
    for the arrival order): the values the check saw, never a duplicate key.
    """
    struct = flat_struct(schema, strict=True, keys=keys, sequence=sequence)
    return None if struct is None else msgspec.json.Decoder(struct)


def explain(
    schema: dict[str, Any], record: Any, failure: ValidationFailure, *, exact_numbers: bool = False
) -> str:
    """`field 'a.b': <reason>` for the first (most relevant) violation of the record."""
    limited = with_bigquery_limits(schema, exact_numbers=exact_numbers)
    validator_class = jsonschema.validators.validator_for(limited, jsonschema.Draft7Validator)
    error = best_match(validator_class(limited).iter_errors(record))
    if error is None:  # only the compiled validator objected; pass its own words on
        return str(getattr(failure, "message", failure))
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator in ("minimum", "maximum") and error.validator_value in (
        INT64_MIN,
        INT64_MAX,
    ):
        return (
            f"field '{path}': {error.instance!r} is outside BigQuery's INT64 range "
            f"({INT64_MIN} to {INT64_MAX})"
        )
    if error.validator == "pattern" and error.validator_value == DATE_PATTERN:
        return (
            f"field '{path}': {error.instance!r} is not a date or timestamp BigQuery can store "
            "(it must start with a date from 0001-01-01 to 9999-12-31, as YYYY-MM-DD)"
        )
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        field = ".".join(part for part in (path, missing[0] if missing else "") if part)
        return f"field '{field}': {error.message}"
    return f"field '{path or '(record)'}': {error.message}"
