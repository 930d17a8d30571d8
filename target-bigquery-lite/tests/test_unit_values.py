"""The value policy (`values`): each family of values BigQuery cannot hold as sent, generated.

The rows staged here are checked against the strict front's own reading of a load
(`dev_services.load_checks`), so "staged" means "BigQuery would load it".
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
from decimal import Decimal

import pytest
from dev_services.load_checks import NdjsonChecker
from google.cloud.bigquery import SchemaField

from target_bigquery_lite import messages
from target_bigquery_lite.config import parse_settings
from target_bigquery_lite.errors import RecordError
from target_bigquery_lite.load_methods import method_for
from target_bigquery_lite.schema_mapping import map_schema
from target_bigquery_lite.streams import StreamSpec, build_spec
from target_bigquery_lite.validate import check_schema, compile_validator
from target_bigquery_lite.values import UnloadableError, shaper_for

SETTINGS = {"project": "p", "dataset": "d"}


def spec(properties: dict, *, exact_numbers: bool = False, **settings) -> StreamSpec:
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, **properties}}
    message = messages.parse_schema(
        {"type": "SCHEMA", "stream": "s", "schema": schema, "key_properties": ["id"]}, 1
    )
    parsed, _ = parse_settings({**SETTINGS, "exact_numbers": exact_numbers, **settings})
    return build_spec(message, parsed, lambda keys: method_for("merge", "s", keys), "run")


def staged(stream: StreamSpec, line: str) -> dict:
    """Parse `line` as the runner does, stage it, check it as BigQuery reads it."""
    record = messages.parse_line(line.encode(), 1, exact=stream.exact)
    row = stream.encode(record, {}, 1, 1, "2024-01-01T00:00:00Z", None)
    checker = NdjsonChecker([f.to_api_repr() for f in stream.all_wanted()], ignore_unknown=True)
    checker.feed(row)
    checker.finish()
    assert checker.errors == 0, checker.messages
    return json.loads(row)


def refusal(stream: StreamSpec, line: str) -> str:
    record = messages.parse_line(line.encode(), 1, exact=stream.exact)
    with pytest.raises(RecordError) as failure:
        stream.encode(record, {}, 1, 1, "2024-01-01T00:00:00Z", None)
    return str(failure.value)


# --- exact numbers ---------------------------------------------------------------------------

RANDOM = random.Random(14)
DECIMALS = [
    f"{sign}{RANDOM.randrange(10**whole) if whole else 0}.{RANDOM.randrange(10**scale):0{scale}d}"
    for sign, whole, scale in itertools.product(("", "-"), (0, 1, 13, 20, 29), (1, 5, 9))
]


@pytest.mark.parametrize("text", DECIMALS)
def test_numeric_columns_hold_the_taps_digits(text: str) -> None:
    stream = spec({"n": {"type": "number", "multipleOf": 1e-09}})
    assert stream.wanted[1].field_type == "NUMERIC"
    assert Decimal(staged(stream, f'{{"id": 1, "n": {text}}}')["n"]) == Decimal(text)


@pytest.mark.parametrize("scale", [10, 20, 38])
def test_bignumeric_holds_up_to_38_fractional_digits(scale: int) -> None:
    stream = spec({"n": {"type": "number", "multipleOf": 1e-38}})
    assert stream.wanted[1].field_type == "BIGNUMERIC"
    text = "123456789012345678901234567890." + "7" * scale
    assert staged(stream, f'{{"id": 1, "n": {text}}}')["n"] == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1e30", "beyond NUMERIC's range"),
        ("0.0000000001", "more than the 9 fractional digits"),
        ("3.141592653589793", "BIGNUMERIC"),
    ],
)
def test_numbers_numeric_cannot_hold_are_refused_naming_the_field(text: str, why: str) -> None:
    message = refusal(spec({"n": {"type": "number"}}, exact_numbers=True), f'{{"id":1,"n":{text}}}')
    assert "stream 's', record 1: field 'n'" in message
    assert why in message


def test_trailing_zeros_beyond_the_scale_are_dropped_not_refused() -> None:
    stream = spec({"n": {"type": "number", "multipleOf": 1e-09}})
    assert staged(stream, '{"id": 1, "n": 1.50000000000000}')["n"] == "1.500000000"


def test_a_decimal_off_its_multiple_of_is_refused() -> None:
    stream = spec({"n": {"type": "number", "multipleOf": 0.01}})
    assert staged(stream, '{"id": 1, "n": 19.01}')["n"] == "19.01"
    assert "not a multiple of 0.01" in refusal(stream, '{"id": 1, "n": 19.015}')


def test_float_columns_of_an_exact_stream_get_doubles() -> None:
    stream = spec({"n": {"type": "number", "multipleOf": 1e-09}, "f": {"type": "number"}})
    row = staged(stream, '{"id": 1, "n": 0.1, "f": 0.1}')
    assert row == {"id": 1, "n": "0.1", "f": 0.1, "_bqlite_seq": 1}


# --- integers, floats, tokens ----------------------------------------------------------------


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**63 - 1, -(2**63)])
def test_integers_beyond_2_53_are_quoted_for_int64(value: int) -> None:
    assert staged(spec({"n": {"type": "integer"}}), f'{{"id": 1, "n": {value}}}')["n"] == str(value)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_tokens_load_into_float64_as_bigquery_spells_them(token: str) -> None:
    assert staged(spec({"x": {"type": "number"}}), f'{{"id": 1, "x": {token}}}')["x"] == token


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1.5e309"])
def test_numbers_beyond_a_double_are_refused_not_nulled(number: str) -> None:
    assert "beyond FLOAT64's range" in refusal(
        spec({"x": {"type": "number"}}), f'{{"id": 1, "x": {number}}}'
    )


def test_nan_in_a_json_column_is_refused() -> None:
    assert "is not a JSON number" in refusal(spec({"j": {}}), '{"id": 1, "j": {"a": NaN}}')


# --- arrays and JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "value", "kept"),
    [
        ({"type": "string"}, '["a", null, "b"]', ["a", "b"]),
        ({"type": ["null", "integer"]}, "[null, null]", []),
        ({"type": "object", "properties": {"v": {"type": "string"}}}, '[null, {"v": "x"}]',
         [{"v": "x"}]),
        ({"type": "string", "format": "date"}, '["2024-01-02", null]', ["2024-01-02"]),
    ],
)  # fmt: skip
def test_null_array_elements_are_dropped(items: dict, value: str, kept: list) -> None:
    stream = spec({"a": {"type": "array", "items": items}})
    assert staged(stream, f'{{"id": 1, "a": {value}}}')["a"] == kept


def test_arrays_of_arrays_become_one_json_value() -> None:
    nested = {"type": ["null", "integer", "array"], "items": {"$ref": "#/definitions/n"}}
    schema = {"definitions": {"n": nested}, "properties": {"m": {"type": "array", "items": nested}}}
    assert map_schema(schema, "s").fields[0].field_type == "JSON"


@pytest.mark.parametrize(
    ("value", "loaded"),
    [('"text"', '"text"'), ("42", 42), ("2.50", 2.5), ("true", True), ("[1, [2]]", [1, [2]])],
)
def test_json_columns_take_scalars(value: str, loaded: object) -> None:
    jsonb = {"type": ["null", "object", "array"]}  # how singer-python taps declare jsonb
    row = staged(spec({"j": jsonb}), f'{{"id": 1, "j": {value}}}')
    assert row["j"] == (json.dumps(json.loads(value)) if isinstance(loaded, str) else loaded)


def test_json_numbers_keep_their_digits() -> None:
    stream = spec({"j": {}})
    record = messages.parse_line(
        b'{"id": 1, "j": {"d": 1.500000000, "n": 123456789012345678901}}', 1, exact=True
    )
    row = stream.encode(record, {}, 1, 1, "", None)
    assert b'"d":1.500000000' in row
    assert b'"n":123456789012345678901' in row


# --- dates and times -------------------------------------------------------------------------

OFFSETS = ["+05:30", "-11:00", "+00:00", "Z", "+14:00", "-0330", "+01"]


@pytest.mark.parametrize(
    ("clock", "offset"), list(itertools.product(["12:34:56.789", "00:00", "23:59:59"], OFFSETS))
)
def test_times_with_an_offset_are_the_same_instant_in_utc(clock: str, offset: str) -> None:
    stream = spec({"t": {"type": "string", "format": "time"}})
    got = staged(stream, f'{{"id": 1, "t": "{clock}{offset}"}}')["t"]
    zone = (
        dt.UTC
        if offset == "Z"
        else dt.datetime.strptime(
            offset.replace(":", "") + ("00" if len(offset) == 3 else ""), "%z"
        ).tzinfo
    )
    local = dt.datetime.combine(dt.date(2000, 1, 2), dt.time.fromisoformat(clock), zone)
    assert dt.time.fromisoformat(got) == local.astimezone(dt.UTC).time().replace(tzinfo=None)


@pytest.mark.parametrize(
    ("kind", "value", "why"),
    [
        ("date-time", "2016-12-31T23:59:60Z", "leap second"),
        ("date-time", "2024-01-01garbage", "no time zone BigQuery reads"),
        ("date-time", "2024-01-01T00:00:00 EST", "no time zone BigQuery reads"),
        ("date-time", "2024-02-30T00:00:00Z", "no such date"),
        ("date-time", "2024-01-01T00:00:00.1234567Z", "more than 6 fractional digits"),
        ("date-time", "2024-01-01T24:00:00Z", "no such time of day"),
        ("date", "2024-02-30", "no such date"),
        ("date", "2024-01-01T00:00:00Z", "not a date as YYYY-MM-DD"),
        ("time", "2024-01-01T01:01:11+00:00", "not a time of day"),
        ("time", "12:00:60", "leap second"),
    ],
)
def test_dates_and_times_bigquery_cannot_read_are_refused(kind: str, value: str, why: str) -> None:
    stream = spec({"v": {"type": "string", "format": kind}})
    message = refusal(stream, f'{{"id": 1, "v": "{value}"}}')
    assert "field 'v'" in message
    assert why in message


@pytest.mark.parametrize(
    "value",
    ["2024-01-01T00:00:00Z", "2024-01-01 00:00:00+05:30", "2024-01-01T00:00:00.123456-0800",
     "2024-01-01", "2024-01-01 12:00", "2024-01-01T00:00:00 UTC", "2024-01-01 America/New_York"],
)  # fmt: skip
def test_timestamps_bigquery_reads_pass_unchanged(value: str) -> None:
    stream = spec({"v": {"type": "string", "format": "date-time"}})
    assert staged(stream, f'{{"id": 1, "v": "{value}"}}')["v"] == value


def test_time_extracted_must_be_a_timestamp() -> None:
    stream = spec({}, add_metadata_columns=True)
    record = {"id": 1}
    with pytest.raises(
        RecordError, match="its message's field 'time_extracted': 'yesterday' is not a timestamp"
    ):
        stream.encode(record, {"time_extracted": "yesterday"}, 1, 1, "", None)


# --- schemas as taps write them --------------------------------------------------------------

DRAFT4 = {"type": ["null", "number"], "exclusiveMaximum": True, "maximum": 10, "minimum": 0}


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"n": DRAFT4}},
        {"$schema": "http://json-schema.org/draft-04/schema#", "properties": {"n": DRAFT4}},
        {"$schema": "http://json-schema.org/draft-06/schema#",
         "properties": {"n": {"type": "number", "exclusiveMaximum": 10}}},
        {"$schema": "https://json-schema.org/draft/2019-09/schema",
         "properties": {"n": {"type": "number", "exclusiveMaximum": 10}}},
        {"$schema": "https://json-schema.org/draft/2020-12/schema",
         "properties": {"n": {"type": "number", "exclusiveMaximum": 10}}},
    ],
)  # fmt: skip
def test_drafts_4_to_2020_12_are_read_as_written(schema: dict) -> None:
    check_schema(schema, "s")
    validate = compile_validator(schema, "s")
    validate({"n": 9.5})
    with pytest.raises(Exception, match="10"):
        validate({"n": 10})


def test_2020_12_keywords_draft_7_lacks_are_still_checked() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "properties": {"pair": {"type": "array", "prefixItems": [{"type": "integer"}]}},
    }
    check_schema(schema, "s")
    compile_validator(schema, "s")({"pair": [1, "x"]})
    with pytest.raises(Exception, match="not of type 'integer'"):
        compile_validator(schema, "s")({"pair": ["x"]})


def test_fields_without_conversions_need_no_shaper() -> None:
    fields = (SchemaField("a", "INT64"), SchemaField("b", "STRING"), SchemaField("c", "BOOL"))
    assert shaper_for(fields, careful=False) is None
    with pytest.raises(UnloadableError):
        shaper_for((SchemaField("d", "DATE"),), careful=False)({"d": "2024-13-01"})
