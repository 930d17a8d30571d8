"""Pure tests: message parsing, the line reader, BATCH files, validation messages, config."""

from __future__ import annotations

import gzip
import json
import os
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from target_bigquery_lite import batch_files, messages
from target_bigquery_lite.config import DEFAULT_BATCH_MAX_ROWS, parse_settings
from target_bigquery_lite.errors import InputError
from target_bigquery_lite.reader import LineReader
from target_bigquery_lite.validate import (
    VALIDATION_ERRORS,
    check_schema,
    compile_validator,
    explain,
)


def test_parse_line_handles_what_python_taps_emit() -> None:
    parsed = messages.parse_line(b'{"type": "RECORD", "v": [NaN, -Infinity, 1e400, 1.5]}', 1)
    nan, minus_infinity, overflow, plain = parsed["v"]
    assert isinstance(nan, messages.NonFinite)
    assert nan.token() == "NaN"
    assert isinstance(minus_infinity, messages.NonFinite)
    assert minus_infinity.token() == "-Infinity"
    assert isinstance(overflow, messages.Overflow)
    assert not isinstance(overflow, messages.NonFinite)
    assert type(plain) is float
    exact = messages.parse_line(b'{"v": [5000000000000.123456789, 1E-9, 7]}', 1, exact=True)
    assert exact["v"] == [Decimal("5000000000000.123456789"), Decimal("1E-9"), 7]
    assert type(exact["v"][2]) is int
    with pytest.raises(InputError, match="input line 7 is not valid JSON"):
        messages.parse_line(b"{nope", 7)
    with pytest.raises(InputError, match="input line 3 is not a JSON object"):
        messages.parse_line(b"[1, 2]", 3)


def test_schema_message_fields() -> None:
    parsed = messages.parse_schema({"stream": "s", "schema": {"properties": {}}}, 1)
    assert parsed.key_properties == ()  # missing key_properties: none
    with pytest.raises(InputError, match="bad 'key_properties'"):
        messages.parse_schema({"stream": "s", "schema": {}, "key_properties": "id"}, 1)
    with pytest.raises(InputError, match="SCHEMA message on input line 2 has no valid 'stream'"):
        messages.parse_schema({"type": "SCHEMA", "schema": {}}, 2)


def test_batch_and_activate_version_messages() -> None:
    batch = messages.parse_batch(
        {"stream": "s", "encoding": {"format": "jsonl", "compression": "gzip"}, "manifest": ["a"]},
        1,
    )
    assert (batch.compression, batch.manifest) == ("gzip", ("a",))
    with pytest.raises(InputError, match="has no list 'manifest'"):
        messages.parse_batch({"stream": "s", "encoding": {"format": "jsonl"}}, 1)
    assert messages.parse_activate_version({"stream": "s", "version": 3}, 1).version == 3
    with pytest.raises(InputError, match="has no integer version"):
        messages.parse_activate_version({"stream": "s", "version": "3"}, 1)


def test_line_reader_splits_chunks_and_keeps_the_tail() -> None:
    read_fd, write_fd = os.pipe()
    reader = LineReader(read_fd, chunk_size=8)
    os.write(write_fd, b'{"a":1}\n{"b":')
    assert reader.read_lines(timeout=5) == [b'{"a":1}']
    assert reader.read_lines(timeout=0.01) == []  # nothing more yet: the timer may run
    os.write(write_fd, b"2}\n" + b"x" * 20)
    lines: list[bytes] = []
    while not lines:
        lines = reader.read_lines(timeout=5) or []
    assert lines == [b'{"b":2}']
    os.close(write_fd)
    tail: list[bytes] = []
    while (chunk := reader.read_lines(timeout=5)) is not None:
        tail += chunk
    assert tail == [b"x" * 20]
    assert reader.ended_mid_line
    assert reader.lines_read == 3
    os.close(read_fd)


def test_line_reader_waits_for_a_slow_writer() -> None:
    read_fd, write_fd = os.pipe()
    reader = LineReader(read_fd)
    timer = threading.Timer(0.05, lambda: os.write(write_fd, b"late\n"))
    timer.start()
    lines: list[bytes] = []
    while not lines:
        lines = reader.read_lines(timeout=5) or []
    assert lines == [b"late"]
    timer.join()
    os.close(write_fd)
    os.close(read_fd)


def test_batch_files_plain_and_gzip(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(b'{"id":1}\n{"id":2}')  # no final newline
    packed = tmp_path / "packed.json.gz"
    packed.write_bytes(gzip.compress(b'{"id":3}\n\n{ }\n'))
    blocks = list(batch_files.raw_blocks(plain))
    assert sum(rows for _, rows in blocks) == 2
    assert b"".join(block for block, _ in blocks) == b'{"id":1}\n{"id":2}\n'
    blocks = list(batch_files.blocks_with_sequence(packed, "_seq", 10, "s"))
    assert sum(rows for _, rows in blocks) == 2
    assert [json.loads(line) for line in b"".join(b for b, _ in blocks).splitlines()] == [
        {"_seq": 10, "id": 3},
        {"_seq": 11},
    ]
    assert list(batch_files.iter_lines(packed)) == [b'{"id":3}', b"{ }"]


def test_batch_manifest_paths(tmp_path: Path) -> None:
    roots = (str(tmp_path.resolve()),)
    path = tmp_path / "a b.jsonl"
    path.write_text("{}\n")
    assert batch_files.manifest_path(path.as_uri(), "s", roots) == path.resolve()
    with pytest.raises(InputError, match="not a local file:// URL"):
        batch_files.manifest_path("https://example.invalid/a.jsonl", "s", roots)
    with pytest.raises(InputError, match="does not exist"):
        batch_files.manifest_path((tmp_path / "missing").as_uri(), "s", roots)


@pytest.mark.parametrize("outside", ["/etc/passwd", "../secret.json", "sub/../../secret.json"])
def test_batch_manifests_outside_the_roots_are_refused(tmp_path: Path, outside: str) -> None:
    root = tmp_path / "batches"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.json").write_text('{"private_key": "x"}\n')
    target = outside if outside.startswith("/") else str(root / outside)
    with pytest.raises(InputError, match="is outside batch_roots"):
        batch_files.manifest_path(Path(target).as_uri(), "s", (str(root.resolve()),))


def test_a_symlink_out_of_the_roots_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "batches"
    root.mkdir()
    (tmp_path / "key.json").write_text('{"private_key": "x"}\n')
    (root / "innocent.jsonl").symlink_to(tmp_path / "key.json")
    with pytest.raises(InputError, match="is outside batch_roots"):
        batch_files.manifest_path((root / "innocent.jsonl").as_uri(), "s", (str(root),))


def test_without_batch_roots_every_manifest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("{}\n")
    with pytest.raises(InputError, match="the batch_roots setting, and it is empty"):
        batch_files.manifest_path(path.as_uri(), "s", ())


def test_validation_messages_name_the_field() -> None:
    host = {"type": "object", "properties": {"port": {"type": "integer"}}}
    schema = {
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "integer"}, "host": host},
    }
    check_schema(schema, "s")
    validate = compile_validator(schema, "s")
    for record, reason in [
        ({}, "field 'id': 'id' is a required property"),
        ({"id": "x"}, "field 'id': 'x' is not of type 'integer'"),
        ({"id": 1, "host": {"port": "80"}}, "field 'host.port': '80' is not of type 'integer'"),
    ]:
        with pytest.raises(VALIDATION_ERRORS) as failure:
            validate(record)
        assert explain(schema, record, failure.value) == reason
    validate({"id": 1, "extra": True})


def test_invalid_json_schema_is_reported() -> None:
    with pytest.raises(InputError, match="not a valid JSON Schema at properties/id/type"):
        check_schema({"properties": {"id": {"type": "integr"}}}, "s")


def test_settings_defaults() -> None:
    settings, warnings = parse_settings({"project": "p", "dataset": "d", "other": 1})
    assert settings.batch_max_rows == DEFAULT_BATCH_MAX_ROWS
    assert settings.load_method is None
    assert settings.validate_records is True
    assert warnings == ["config: ignoring unknown setting 'other'"]


FLAT = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": ["string", "null"]},
        "score": {"type": "number"},
        "on": {"type": "boolean", "description": "ignored keywords are fine"},
    },
}


@pytest.mark.parametrize(
    ("record", "valid"),
    [
        ({"id": 1}, True),
        ({"id": 1, "name": None, "score": 2, "on": False, "extra": [1]}, True),
        ({"id": 1.0}, True),  # JSON Schema integers include 1.0; msgspec alone would refuse
        ({"id": True}, False),
        ({"id": 1, "score": "2"}, False),
        ({"id": 1, "on": None}, False),
        ({"name": "x"}, False),
        ({"id": None}, False),
    ],
)
def test_flat_schema_fast_path_agrees_with_json_schema(record: dict, valid: bool) -> None:
    import jsonschema

    validate = compile_validator(FLAT, "s")
    assert (jsonschema.Draft7Validator(FLAT).is_valid(record)) is valid
    if valid:
        validate(record)
    else:
        with pytest.raises(VALIDATION_ERRORS):
            validate(record)


def test_only_flat_schemas_take_the_msgspec_path() -> None:
    from target_bigquery_lite.validate import flat_struct

    assert flat_struct(FLAT) is not None
    closed = flat_struct({**FLAT, "additionalProperties": False})
    assert closed is not None
    with pytest.raises(VALIDATION_ERRORS):
        compile_validator({**FLAT, "additionalProperties": False}, "s")({"id": 1, "x": 2})
    for not_flat in (
        {**FLAT, "properties": {"id": {"type": "integer", "minimum": 0}}},
        {**FLAT, "properties": {"id": {"type": ["integer", "string"]}}},
        {**FLAT, "properties": {"id": {"type": "object"}}},
        {**FLAT, "properties": {"id": {"anyOf": [{"type": "integer"}]}}},
        {**FLAT, "patternProperties": {"x": {}}},
    ):
        assert flat_struct(not_flat) is None
