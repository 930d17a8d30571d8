"""Pure tests: BATCH rows checked a block at a time get the row path's verdicts and rows.

Each case stages one batch file twice with `staged_chunks`: with the stream's block
decoder (msgspec, 128 KiB at a time) and without it (the row path: orjson and the compiled
validator, row by row). Both must end the same way (the same error message, naming the
same line, or the same last sequence number) with the same rows staged. The odd line sits
in the middle of a ~380 KiB file, so the blocks around it take the block path.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from target_bigquery_lite.batch_rows import RowContext, staged_chunks
from target_bigquery_lite.config import parse_settings
from target_bigquery_lite.errors import TargetError
from target_bigquery_lite.load_methods import method_for
from target_bigquery_lite.messages import SchemaMessage
from target_bigquery_lite.streams import StreamSpec, build_spec
from target_bigquery_lite.validate import flat_struct

PROPERTIES = {
    "id": {"type": "integer"},
    "time": {"type": "integer"},
    "src": {"type": "string"},
    "bytes": {"type": ["integer", "null"]},
    "ratio": {"type": ["number", "null"]},
    "seen_at": {"type": ["string", "null"], "format": "date-time"},
    "ok": {"type": ["boolean", "null"]},
}
CLOSED = {
    "type": "object",
    "properties": PROPERTIES,
    "required": ["id", "time", "src"],
    "additionalProperties": False,
}
OPEN = {**CLOSED, "additionalProperties": True}
NULLABLE_KEY = {  # the key is neither required nor non-null: StreamSpec.encode checks it
    **OPEN,
    "properties": {**PROPERTIES, "id": {"type": ["integer", "null"]}},
    "required": ["time", "src"],
}
ROWS = 3000
ODD_AT = 1500  # the odd line comes after this many rows: line 1501 of the file


def row(number: int) -> bytes:
    """A valid row; every third one has nulls, others a timestamp and a fraction."""
    if number % 3 == 0:
        values = {"id": number, "time": number, "src": f"C{number}", "bytes": None, "ok": None}
    else:
        values = {"id": number, "time": number, "src": f"C{number} ü", "bytes": number * 10,
                  "ratio": number / 7, "seen_at": "2024-01-02T03:04:05Z", "ok": True}  # fmt: skip
    return json.dumps(values).encode()


def batch_file(tmp_path: Path, odd: bytes, *, packed: bool = False, last_newline: bool = True):
    """ROWS valid rows with `odd` (one or more lines) after row ODD_AT."""
    lines = (
        [row(n) for n in range(1, ODD_AT + 1)] + [odd] + [row(n) for n in range(ODD_AT + 1, ROWS)]
    )
    data = b"\n".join(lines) + (b"\n" if last_newline else b"")
    path = tmp_path / "rows.jsonl"
    path.write_bytes(gzip.compress(data) if packed else data)
    return path


def make_stream(schema: dict[str, Any], method: str | None = None, **settings: Any) -> StreamSpec:
    parsed, _ = parse_settings({"project": "p", "dataset": "d", "load_method": method, **settings})
    return build_spec(
        SchemaMessage("flows", schema, ("id",)),
        parsed,
        lambda keys: method_for(parsed.load_method, "flows", keys),
        "run1",
    )


def stage(
    tmp_path: Path, schema: dict[str, Any], path: Path, *, blocks: bool, method: str | None = None
) -> tuple[str, list[dict[str, Any]], int]:
    """Stage `path` one way: (how it ended, the staged rows, rows that took the row path)."""
    stream = make_stream(schema, method)
    if blocks:
        assert stream.batch_decoder is not None
    else:
        stream = dataclasses.replace(stream, flat_decoder=None)
        assert stream.batch_decoder is None
    staged = tmp_path / f"staged-{blocks}.ndjson"
    encode = StreamSpec.encode
    one_by_one = 0

    def counting_encode(*args: Any) -> bytes:
        nonlocal one_by_one
        one_by_one += 1
        return encode(*args)

    received = 0
    seq = 10
    with staged.open("wb") as out, mock.patch.object(StreamSpec, "encode", counting_encode):
        try:
            context = RowContext({"type": "BATCH"}, "", None)
            for chunk in staged_chunks(stream, path, context, 10, 1):
                assert chunk.first_seq == seq + 1
                out.write(chunk.data)
                received += chunk.rows
                seq += chunk.rows
            outcome = f"ok: last seq {seq}, {received} received"
        except TargetError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
    written = len(staged.read_bytes().splitlines())
    assert written == received
    rows = []
    for line in staged.read_bytes().splitlines() if written else []:
        values = json.loads(line)  # an absent and a null value both load as NULL
        rows.append({key: value for key, value in values.items() if value is not None})
    return outcome, rows, one_by_one


def odd_row(number: int, **raw: str | None) -> bytes:
    """Row `number` with values replaced, added (raw JSON text) or removed (None)."""
    values: dict[str, Any] = json.loads(row(number))
    for key, text in raw.items():
        values[key] = f"<{key}>"
        if text is None:
            del values[key]
    line = json.dumps(values).encode()
    for key, text in raw.items():
        line = line.replace(
            b'"<' + key.encode() + b'>"', (text or "").encode("utf-8", "surrogateescape")
        )
    return line


END = ROWS + 1  # a row number that is not a multiple of 3: every field filled
BAD_DATE = "is not a date or timestamp BigQuery can store"
CASES = [  # (id, schema, the odd line(s), what both ways must end with)
    ("valid", CLOSED, row(END), "ok: last seq 3010"),
    ("integer-as-1.0", CLOSED, odd_row(END, time="3001.0"), "ok:"),
    ("integer-beyond-int64", CLOSED, odd_row(END, time=str(2**63)), "outside BigQuery's INT64"),
    # orjson reads this one as a float equal to -2**63: JSON Schema and the limits pass it
    ("integer-below-int64", CLOSED, odd_row(END, time=str(-(2**63) - 1)), "ok:"),
    ("bool-as-integer", CLOSED, odd_row(END, time="true"), "True is not of type 'integer'"),
    ("string-as-integer", CLOSED, odd_row(END, time='"1"'), "'1' is not of type 'integer'"),
    ("integer-as-bool", CLOSED, odd_row(END, ok="1"), "1 is not of type 'boolean'"),
    ("year-10000", CLOSED, odd_row(END, seen_at='"10000-01-02T00:00:00Z"'), BAD_DATE),
    ("year-0", CLOSED, odd_row(END, seen_at='"0000-01-02"'), BAD_DATE),
    ("lone-surrogate", CLOSED, odd_row(END, src='"C\\ud800"'), "'src' holds a lone UTF-16"),
    ("invalid-utf8", CLOSED, odd_row(END, src='"C\udcff"'), "1501 is not valid JSON: 'utf-8'"),
    ("nan", CLOSED, odd_row(END, ratio="NaN"), "ok:"),
    ("number-beyond-double", CLOSED, odd_row(END, ratio="-1e400"), "beyond FLOAT64's range"),
    ("unknown-field", CLOSED, odd_row(END, extra="1"), "('extra' was unexpected)"),
    ("unknown-field-allowed", OPEN, odd_row(END, extra='[1, {"a": NaN}]'), "ok:"),
    ("unknown-invalid-utf8", OPEN, odd_row(END, extra='"\udcff"'), "not valid JSON: 'utf-8'"),
    ("unknown-surrogate", OPEN, odd_row(END, extra='"\\udc00"'), "'extra' holds a lone UTF-16"),
    ("sequence-column-sent", OPEN, odd_row(END, _bqlite_seq="0"), "ok:"),
    ("missing-required", CLOSED, odd_row(END, src=None), "field 'src': 'src' is a required"),
    ("empty-object", CLOSED, b"{}", "field 'id': 'id' is a required property"),
    ("null-key", NULLABLE_KEY, odd_row(END, id="null"), "key property 'id' is missing or null"),
    ("missing-key", NULLABLE_KEY, odd_row(END, id=None), "key property 'id' is missing or null"),
    ("duplicate-key", CLOSED, odd_row(END)[:-1] + b', "src": "last"}', "ok:"),
    ("escaped-key", CLOSED, row(END).replace(b'"src"', b'"\\u0073rc"'), "ok:"),
    ("two-rows-on-a-line", CLOSED, row(END) + b" " + row(END + 1), "1501 is not valid JSON"),
    # msgspec counts two rows and skips the blank line: as many rows as newlines
    ("two-rows-and-a-blank", CLOSED, row(END) + row(END + 1) + b"\n", "1501 is not valid JSON"),
    ("not-an-object", CLOSED, b"[1, 2]", "rows.jsonl line 1501 is not a JSON object"),
    ("blanks-then-bad-row", CLOSED, b"\n  \n\t\r\n" + odd_row(END, time='"x"'), "line 1501)"),
    ("form-feed-line", CLOSED, b"\x0c", "ok: last seq 3009"),  # blank to bytes.strip()
    (
        "indented-and-crlf",
        CLOSED,
        b"  " + row(END) + b"\r\n" + row(END + 1) + b"\r",
        "ok: last seq 3011",
    ),
    ("byte-order-mark", CLOSED, b"\xef\xbb\xbf" + row(END), "ok:"),
]


@pytest.mark.parametrize(
    ("schema", "odd", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_blocks_end_like_the_row_path(
    tmp_path: Path, schema: dict[str, Any], odd: bytes, expected: str
) -> None:
    path = batch_file(tmp_path, odd)
    by_rows, rows, _ = stage(tmp_path, schema, path, blocks=False)
    by_blocks, block_rows, one_by_one = stage(tmp_path, schema, path, blocks=True)
    assert expected in by_rows
    assert by_blocks == by_rows
    assert block_rows == rows
    assert one_by_one < ROWS / 2  # only the odd line's block went row by row
    if by_rows.startswith("RecordError"):
        assert f"({path} line {ODD_AT + 1})" in by_rows


@pytest.mark.parametrize("method", ["merge", "append", "overwrite"])
@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_valid_files_take_the_block_path_only(tmp_path: Path, method: str, packed: bool) -> None:
    path = batch_file(tmp_path, row(ROWS), packed=packed, last_newline=False)
    by_rows, rows, _ = stage(tmp_path, OPEN, path, blocks=False, method=method)
    by_blocks, block_rows, one_by_one = stage(tmp_path, OPEN, path, blocks=True, method=method)
    assert by_blocks == by_rows == f"ok: last seq {10 + ROWS}, {ROWS} received"
    assert block_rows == rows
    assert one_by_one == 0
    assert [r.get("_bqlite_seq") for r in rows[:2]] == (
        [11, 12] if method == "merge" else [None] * 2
    )


def test_only_streams_staging_rows_unchanged_get_a_block_decoder() -> None:
    assert make_stream(CLOSED).batch_decoder is not None
    raw = make_stream(CLOSED, validate_records=False)
    assert raw.batch_decoder is None  # copied raw instead
    assert raw.raw_batches_ok
    versioned = make_stream(CLOSED).with_versions()
    assert versioned.batch_decoder is None
    renamed = {**OPEN, "properties": {**PROPERTIES, "Sée": {"type": "string"}}}
    assert make_stream(renamed).batch_decoder is None  # its key needs renaming
    twin = {**CLOSED, "properties": {**PROPERTIES, "src": {"type": "string", "minLength": 0}}}
    assert flat_struct(twin) is None  # the end-to-end tests' row path twin
