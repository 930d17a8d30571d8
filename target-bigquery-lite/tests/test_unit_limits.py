"""Pure regression tests: inputs BigQuery cannot store, or the target could not parse safely.

Found by the project's bad-input catalog (tests/reliability/): integers beyond INT64 and
out-of-range dates used to reach the load job (BigQuery fails it with a summary error; the
emulator loaded some silently), a remote `$ref` made the validator fetch a URL, deep nesting
raised a RecursionError traceback, and orjson turned integers beyond 64 bits in a STATE into
floats.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import jsonschema
import pytest

from target_bigquery_lite import messages
from target_bigquery_lite.errors import InputError
from target_bigquery_lite.schema_mapping import MAX_RECORD_DEPTH, map_schema
from target_bigquery_lite.state import StateTracker
from target_bigquery_lite.validate import (
    INT64_MAX,
    INT64_MIN,
    VALIDATION_ERRORS,
    check_schema,
    compile_validator,
    explain,
    flat_struct,
    with_bigquery_limits,
)

FLAT = {
    "type": "object",
    "properties": {
        "n": {"type": ["integer", "null"]},
        "at": {"type": "string", "format": "date-time"},
        "day": {"type": ["string", "null"], "format": "date"},
    },
}
NESTED = {  # not flat: fastjsonschema alone
    "type": "object",
    "properties": {
        "inner": {"type": "object", "properties": FLAT["properties"]},
        "list": {"type": "array", "items": {"type": "integer"}},
    },
}


def failure_reason(schema: dict[str, Any], record: dict[str, Any]) -> str:
    validate = compile_validator(schema, "s")
    with pytest.raises(VALIDATION_ERRORS) as failure:
        validate(record)
    return explain(schema, record, failure.value)


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 2**70, 1.2e21, -1e19])
def test_integers_beyond_int64_fail_validation_naming_the_field(value: float) -> None:
    assert flat_struct(FLAT) is not None
    reason = failure_reason(FLAT, {"n": value, "at": "2024-01-01"})
    assert reason.startswith(f"field 'n': {value!r} is outside BigQuery's INT64 range")
    nested = failure_reason(NESTED, {"inner": {"n": value}})
    assert nested.startswith("field 'inner.n':")
    assert "INT64 range" in failure_reason(NESTED, {"list": [1, value]})


@pytest.mark.parametrize("value", [INT64_MAX, INT64_MIN, 0, None])
def test_integers_within_int64_pass(value: int | None) -> None:
    compile_validator(FLAT, "s")({"n": value, "at": "2024-01-01T00:00:00Z"})
    compile_validator(NESTED, "s")({"inner": {"n": value}})


@pytest.mark.parametrize(
    "value",
    ["10000-01-01T00:00:00Z", "0000-12-31T00:00:00Z", "yesterday", "2024-13-01", "-0001-1-1"],
)
def test_dates_bigquery_cannot_store_fail_validation(value: str) -> None:
    for schema, record, field in (
        (FLAT, {"at": value}, "at"),
        (FLAT, {"at": "2024-01-01", "day": value}, "day"),
        (NESTED, {"inner": {"at": value}}, "inner.at"),
    ):
        reason = failure_reason(schema, record)
        assert reason.startswith(f"field '{field}': {value!r} is not a date or timestamp BigQuery")


@pytest.mark.parametrize(
    "value", ["2024-01-01T00:00:00Z", "2024-1-2 03:04:05.123456+02:00", "0001-01-01", "9999-12-31"]
)
def test_dates_bigquery_accepts_pass(value: str) -> None:
    compile_validator(FLAT, "s")({"at": value, "day": value})
    compile_validator(NESTED, "s")({"inner": {"at": value}})


def test_the_schema_s_own_tighter_limits_are_kept() -> None:
    own = {"properties": {"n": {"type": "integer", "maximum": 10}, "d": {"format": "date"}}}
    limited = with_bigquery_limits(own)
    assert limited["properties"]["n"] == {"type": "integer", "minimum": INT64_MIN, "maximum": 10}
    assert own["properties"]["n"] == {"type": "integer", "maximum": 10}  # not modified
    assert "pattern" not in limited["properties"]["d"]  # no string type: not a date column
    assert failure_reason(own, {"n": 11}) == "field 'n': 11 is greater than the maximum of 10"
    patterned = {"properties": {"d": {"type": "string", "format": "date", "pattern": "^x"}}}
    assert with_bigquery_limits(patterned) == patterned
    const = {"properties": {"c": {"const": {"type": "integer"}}}}
    assert with_bigquery_limits(const) == const  # values are not schemas


def test_remote_refs_are_refused_before_anything_is_fetched() -> None:
    check_schema({"definitions": {"a": {}}, "properties": {"x": {"$ref": "#/definitions/a"}}}, "s")
    for ref in ("http://127.0.0.1:9/schema.json", "file:///etc/passwd", "other.json#/a"):
        schema = {"properties": {"x": {"items": {"$ref": ref}}}}
        with pytest.raises(InputError, match="is not a reference into the schema itself"):
            check_schema(schema, "s")


def test_deeply_nested_lines_are_a_clear_input_error() -> None:
    deep = b'{"type": "RECORD", "v": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InputError, match="input line 4 nests objects or arrays too deeply"):
        messages.parse_line(deep, 4)


def test_exact_parse_keeps_integers_beyond_64_bits() -> None:
    line = b'{"type": "STATE", "value": {"cursor": 100000000000000000000000001}}'
    assert messages.parse_line(line, 1)["value"]["cursor"] != 100000000000000000000000001
    assert messages.parse_line_exactly(line, 1)["value"]["cursor"] == 100000000000000000000000001
    with pytest.raises(InputError, match="input line 2 is not a JSON object"):
        messages.parse_line_exactly(b"[]", 2)


def test_states_orjson_cannot_write_are_written_exactly() -> None:
    out = io.BytesIO()
    tracker = StateTracker(out)
    tracker.received({"cursor": 2**90, "text": "a\ud800b"}, tag=0)
    assert json.loads(out.getvalue()) == {"cursor": 2**90, "text": "a\ud800b"}


def nested_object(depth: int) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": "integer"}
    for level in reversed(range(depth)):
        prop = {"type": "object", "properties": {f"l{level}": prop}}
    return prop


def test_records_nest_at_most_fifteen_levels_then_become_json(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schema = {"properties": {"deep": nested_object(20), "ok": nested_object(MAX_RECORD_DEPTH)}}
    with caplog.at_level(logging.WARNING, logger="target_bigquery_lite"):
        fields = {field.name: field for field in map_schema(schema, "s").fields}

    def depth(field: Any) -> tuple[int, str]:
        levels = 0
        while field.field_type == "RECORD":
            levels, field = levels + 1, field.fields[0]
        return levels, field.field_type

    assert depth(fields["deep"]) == (MAX_RECORD_DEPTH, "JSON")
    assert depth(fields["ok"]) == (MAX_RECORD_DEPTH, "INT64")
    assert "property deep.l0.l1" in caplog.text
    assert "nested deeper than BigQuery's 15 RECORD levels" in caplog.text
    jsonschema.Draft7Validator.check_schema(schema)
