"""BATCH rows checked a block at a time load what the row path loads, and fail as it fails.

The same batch files go through the target with a flat schema (its BATCH rows are checked a
block at a time by msgspec) and with a twin schema that only adds `"minLength": 0` to one
property: no longer flat, so every row is parsed and checked on its own, as before blocks.
Both must exit alike, print the same error and states, and leave the same rows.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, run_target, singer_lines

PROPERTIES = {
    "id": {"type": "integer"},
    "time": {"type": "integer"},
    "src": {"type": "string"},
    "bytes": {"type": ["integer", "null"]},
    "ratio": {"type": ["number", "null"]},
    "seen_at": {"type": ["string", "null"], "format": "date-time"},
}
FLAT = {"type": "object", "properties": PROPERTIES, "required": ["id", "time", "src"]}
TWIN = {**FLAT, "properties": {**PROPERTIES, "src": {"type": "string", "minLength": 0}}}
SCHEMAS = {"blocks": FLAT, "rows": TWIN}


def row(number: int, **changes: Any) -> bytes:
    values = {"id": number, "time": number, "src": f"C{number} ü", "bytes": number * 10,
              "ratio": number / 7, "seen_at": "2024-01-02T03:04:05Z"}  # fmt: skip
    if number % 3 == 0:
        values.update(bytes=None, ratio=None, seen_at=None)
    return json.dumps({**values, **changes}).encode()


def batch_input(
    path: Path, lines: list[bytes], schema: dict[str, Any], state: int, *, packed: bool = False
) -> bytes:
    """SCHEMA, one BATCH of `lines` (written to `path`), STATE `state`."""
    data = b"\n".join(lines)
    path.write_bytes(gzip.compress(data) if packed else data)
    return singer_lines(
        {"type": "SCHEMA", "stream": "flows", "schema": schema, "key_properties": ["id"]},
        {"type": "BATCH", "stream": "flows", "encoding": {"format": "jsonl"},
         "manifest": [path.as_uri()]},
        {"type": "STATE", "value": {"flows": state}},
    )  # fmt: skip


def error_line(result: Result) -> str:
    return next(line for line in result.stderr.splitlines() if " ERROR " in line).split(": ", 1)[1]


@pytest.mark.parametrize("way", ["blocks", "rows"])
def test_an_invalid_row_mid_block_fails_naming_its_line(
    way: str,
    tmp_path: Path,
    target_config: Callable[..., Path],
    rows: Callable[..., list[dict[str, Any]]],
) -> None:
    schema = SCHEMAS[way]
    first = batch_input(tmp_path / "a.jsonl", [row(n) for n in range(1, 1001)], schema, 1000)
    assert run_target(target_config(), first).returncode == 0  # an earlier run's rows
    lines = [row(n) for n in range(1001, 4001)]  # ~3 blocks of 128 KiB
    lines[1500] = row(2501, time="yesterday")
    second = batch_input(tmp_path / "b.jsonl", lines, schema, 4000)
    result = run_target(target_config(), second)
    assert result.returncode == 1
    assert error_line(result) == (
        "stream 'flows', record 1501 violates its schema: field 'time': 'yesterday' is not of "
        f"type 'integer' ({tmp_path / 'b.jsonl'} line 1501)"
    )
    assert result.states == []
    assert [r["id"] for r in rows("flows")] == list(range(1, 1001))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"time": 2501.0}, None),  # a JSON Schema integer that msgspec refuses
        ({"time": 2**63}, "field 'time': 9223372036854775808 is outside BigQuery's INT64 range"),
        ({"seen_at": "10000-01-01T00:00:00Z"}, "'10000-01-01T00:00:00Z' is not a date or time"),
        ({"src": "\ud800"}, "field 'src' holds a lone UTF-16 surrogate"),
    ],
    ids=["integer-as-1.0", "beyond-int64", "year-10000", "lone-surrogate"],
)
def test_values_msgspec_judges_differently_get_the_row_path_verdict(
    change: dict[str, Any],
    error: str | None,
    tmp_path: Path,
    target_config: Callable[..., Path],
    rows: Callable[..., list[dict[str, Any]]],
) -> None:
    lines = [row(n) for n in range(1, 3001)]
    lines[1500] = row(1501, **change)
    results: dict[str, Result] = {}
    for way, schema in SCHEMAS.items():
        data = batch_input(tmp_path / f"{way}.jsonl", lines, schema, 3000)
        results[way] = run_target(target_config(table_prefix=f"{way}_"), data)
    blocks, by_rows = results["blocks"], results["rows"]
    assert blocks.returncode == by_rows.returncode == (0 if error is None else 1)
    assert blocks.states == by_rows.states
    assert rows("blocks_flows") == rows("rows_flows")
    if error is not None:
        assert error in error_line(blocks)
        assert error_line(blocks) == error_line(by_rows).replace("rows.jsonl", "blocks.jsonl")
    else:
        assert len(rows("blocks_flows")) == 3000


@pytest.mark.parametrize("method", ["merge", "append"])
def test_valid_files_load_the_same_rows_every_way(
    method: str,
    tmp_path: Path,
    target_config: Callable[..., Path],
    rows: Callable[..., list[dict[str, Any]]],
) -> None:
    lines = [row(n) for n in range(1, 3001)]  # blocks of ~1,100 rows
    lines[10] = row(11, time=11.0)  # the first block goes row by row
    lines[1200] += b"\r"  # CRLF, in the second block
    lines[1500] = row(1300, src="sent again")  # a merge keeps the later copy of 1300 ...
    lines[2900] = row(5, src="sent again")  # ... and of 5, from an earlier block
    lines[2600] = b"   " + lines[2600]  # indented: the last block goes row by row
    lines[2999] += b" "  # the last line without a newline
    ways = {"blocks": (FLAT, True), "rows": (TWIN, True), "raw": (FLAT, False)}
    for way, (schema, validate) in ways.items():
        data = batch_input(tmp_path / f"{way}.json.gz", lines, schema, 3000, packed=True)
        config = target_config(table_prefix=f"{way}_", load_method=method,
                               validate_records=validate)  # fmt: skip
        result = run_target(config, data)
        assert result.returncode == 0, result.stderr
        assert result.states[-1] == {"flows": 3000}
    expected = rows("rows_flows", order_by="src")
    assert rows("blocks_flows", order_by="src") == expected
    assert rows("raw_flows", order_by="src") == expected
    assert len(expected) == (2998 if method == "merge" else 3000)
    for number in (5, 1300):
        copies = [r["src"] for r in expected if r["id"] == number]
        assert copies == (["sent again"] if method == "merge" else [f"C{number} ü", "sent again"])
