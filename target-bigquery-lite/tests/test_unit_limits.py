"""Pure regression tests: inputs BigQuery cannot store, or the target could not parse safely.

Found by the project's bad-input catalog (tests/reliability/): integers beyond INT64 and
out-of-range dates used to reach the load job (BigQuery fails it with a summary error; the
emulator loaded some silently), a remote `$ref` made the validator fetch a URL, deep nesting
raised a RecursionError traceback, and orjson turned integers beyond 64 bits in a STATE into
floats.
"""

from __future__ import annotations

import decimal
import errno
import io
import json
import logging
import os
import random
import resource
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from target_bigquery_lite import messages
from target_bigquery_lite.errors import InputError, StagingError
from target_bigquery_lite.schema_mapping import MAX_RECORD_DEPTH, map_schema
from target_bigquery_lite.stage import StagingArea
from target_bigquery_lite.state import StateTracker
from target_bigquery_lite.state_text import state_value
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


def test_states_are_passed_on_byte_for_byte() -> None:
    out = io.BytesIO()
    tracker = StateTracker(out)
    values = [
        b'{"cursor": 100000000000000000000000001, "text": "a\\ud800b"}',
        b'{"c":12345678901234567.89}',
        b'{"c": 0.99999999999999999999}',
        b'{"c":1e400,"d":NaN,"e":-Infinity}',
        b'{"c": "a \\" , } ] value"}',
    ]
    for value in values:
        line = b'{"type": "STATE", "value": ' + value + b', "extra": [1, {"value": 2}]}'
        tracker.received(state_value(line, 1), tag=0)
    assert out.getvalue().splitlines() == values


@pytest.mark.parametrize("value", [b"0", b"false", b'""', b"[]", b"0.0", b'{"a": {}}'])
def test_falsy_states_are_states(value: bytes) -> None:
    out = io.BytesIO()
    StateTracker(out).received(state_value(b'{"type":"STATE","value":' + value + b"}", 1), 0)
    assert out.getvalue() == value + b"\n"


@pytest.mark.parametrize("value", [b"null", b"{}", b"{ }", b" null "])
def test_empty_states_are_never_passed_on(value: bytes) -> None:
    out = io.BytesIO()
    StateTracker(out).received(state_value(b'{"type":"STATE","value":' + value + b"}", 1), 0)
    assert out.getvalue() == b""


def test_state_without_value_is_an_input_error() -> None:
    with pytest.raises(InputError, match="STATE message on input line 3 has no 'value'"):
        state_value(b'{"type": "STATE"}', 3)
    with pytest.raises(InputError, match="STATE message on input line 4 has no 'value'"):
        state_value(b'{"type": "STATE", "x": NaN}', 4)


def _number_texts(rng: random.Random) -> list[str]:
    """Decimal and integer bookmarks of many sizes, as a tap's JSON writer would spell them."""
    texts = []
    for digits in (*range(1, 40), 60, 100, 309, 400):
        whole = str(rng.randrange(10 ** (digits - 1), 10**digits))
        texts += [whole, f"-{whole}"]
        for scale in (1, 2, 9, 17, 20, 38):
            fraction = "".join(rng.choice("0123456789") for _ in range(scale))
            texts += [f"{whole}.{fraction}", f"-0.{fraction}{whole}"]
        texts += [f"{whole[0]}.{whole[1:] or '0'}e{rng.randrange(-400, 400)}"]
    return texts


def test_generated_number_bookmarks_pass_through_exactly() -> None:
    rng = random.Random(20261201)  # fixed: a failure names the text that broke
    out = io.BytesIO()
    tracker = StateTracker(out)
    texts = _number_texts(rng)
    expected = []
    for spacing in ("", " "):
        for text in texts:
            value = f'{{"bookmarks":{{"s":{{"replication_key_value":{spacing}{text}}}}}}}'
            line = f'{{"type":"STATE","value":{value},"x":1}}'.encode()
            tracker.received(state_value(line, 1), tag=0)
            expected.append(value)
    assert out.getvalue().decode().splitlines() == expected
    for value, text in zip(expected, texts * 2, strict=True):
        parsed = json.loads(value, parse_float=decimal.Decimal)
        number = parsed["bookmarks"]["s"]["replication_key_value"]
        assert number == (decimal.Decimal(text) if any(c in text for c in ".e") else int(text))


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


def test_staging_keeps_a_bounded_number_of_files_open(tmp_path: Path) -> None:
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    area = StagingArea(tmp_path, "run1", max_open=3)
    before = open_files()
    writers = [area.open(f"t{n}", 1) for n in range(10)]
    for round_no in range(3):
        for number, writer in enumerate(writers):
            writer.write(f"{round_no}-{number}\n".encode())
        assert open_files() - before <= 3 + 1  # the run folder's lock
    staged = [writer.close() for writer in writers]
    assert [s.path.read_text().split() for s in staged] == [
        [f"{r}-{n}" for r in range(3)] for n in range(10)
    ]
    assert [s.size for s in staged] == [s.path.stat().st_size for s in staged]


def test_the_open_files_bound_follows_the_process_limit(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, hard))
        assert StagingArea(tmp_path, "run2").max_open == 10
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert StagingArea(tmp_path, "run3").max_open == min(64, soft // 4)


def test_a_full_disk_removes_the_failed_runs_own_files(tmp_path: Path) -> None:
    area = StagingArea(tmp_path, "run4")
    writer = area.open("t", 1)
    writer.write(b"{}\n")
    writer.abandon()
    area.after_failure(StagingError("cannot write", errno.ENOSPC))
    assert not area.folder.exists()
    kept = StagingArea(tmp_path, "run5")
    kept.open("t", 1).abandon()
    kept.after_failure(StagingError("bad record"))
    assert kept.folder.is_dir()
