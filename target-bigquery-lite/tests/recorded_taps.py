"""Read the recorded real-tap fixtures of tests/data/taps, and compare BigQuery's cells with them.

They are recorded by scripts/record-tap-fixtures.py (`make tap-fixtures`).

A fixture is a tap's stdout, byte for byte; BATCH manifests and tap-dbf's file path name the
fixture folder as `@TAPS_DIR@`, replaced here. Next to it, `fixtures.json` says which source
table it read and the expected-values document holds every source cell as exact text.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import shutil
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from google.cloud import bigquery

TAPS = Path(__file__).parent / "data" / "taps"
TAPS_DIR_TOKEN = "@TAPS_DIR@"
INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})
MANIFEST: dict[str, Any] = json.loads((TAPS / "fixtures.json").read_text())


def exact_json(text: str) -> Any:
    """JSON with every non-integer number (and NaN/Infinity tokens) as an exact Decimal."""
    return json.loads(text, parse_float=Decimal, parse_constant=Decimal)


@dataclass(frozen=True)
class Column:
    """A source column: its name, type (`numeric(38,9)`, `text[]`, ...) and cell form."""

    name: str
    type: str
    form: str  # "text": the source's output text; "json": JSON text


@dataclass(frozen=True)
class Fixture:
    """One recording, what its tap sent and what its source held."""

    name: str
    tap: str
    stream: str
    schema: dict[str, Any]
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    source_rows: tuple[dict[str, str | None], ...]
    sums: dict[str, str | None]
    sent: dict[tuple[Any, ...], dict[str, Any]]
    last_state: Any

    def key_of(self, row: dict[str, str | None]) -> tuple[Any, ...]:
        """A source row's key as the tap sends it (integer columns as ints)."""
        types = {column.name: column.type.split("(")[0] for column in self.columns}
        return tuple(
            int(value) if value is not None and types[k] in INTEGER_TYPES else value
            for k, value in ((k, row[k]) for k in self.key)
        )


def fixture_input(name: str, tmp_path: Path) -> Path:
    """The fixture as a target input file in `tmp_path`, its BATCH files copied next to it
    (the target reads batch files only under its `batch_roots`: the test's folder)."""
    text = (TAPS / f"{name}.singer").read_text()
    if TAPS_DIR_TOKEN in text:
        shutil.copytree(TAPS / "batches", tmp_path / "batches", dirs_exist_ok=True)
    path = tmp_path / f"{name}.singer"
    path.write_text(text.replace(TAPS_DIR_TOKEN, str(tmp_path)))
    return path


def _records(message: dict[str, Any]) -> list[dict[str, Any]]:
    if message["type"] == "RECORD":
        return [message["record"]]
    if message["type"] == "BATCH":
        found = []
        for url in message["manifest"]:
            path = Path(url.removeprefix("file://").replace(TAPS_DIR_TOKEN, str(TAPS)))
            text = gzip.decompress(path.read_bytes()).decode()
            found += [exact_json(line) for line in text.splitlines() if line.strip()]
        return found
    return []


def load_fixture(name: str) -> Fixture:
    """Parse a fixture and its expected-values document."""
    entry = MANIFEST["fixtures"][name]
    expected = json.loads((TAPS / entry["expected"]).read_text())
    (stream,) = entry["streams"]
    schema: dict[str, Any] = {}
    sent: dict[tuple[Any, ...], dict[str, Any]] = {}
    last_state = None
    key = tuple(expected["key"])
    for line in (TAPS / f"{name}.singer").read_text().splitlines():
        message = exact_json(line.replace(TAPS_DIR_TOKEN, str(TAPS)))
        if message["type"] == "SCHEMA" and message["stream"] == stream:
            schema = message["schema"]
        elif message["type"] == "STATE":
            last_state = message["value"]
        for record in _records(message):
            sent[tuple(record[k] for k in key)] = record
    return Fixture(
        name=name,
        tap=entry["tap"].split("==")[0],
        stream=stream,
        schema=schema,
        key=key,
        columns=tuple(Column(**column) for column in expected["columns"]),
        source_rows=tuple(expected["rows"]),
        sums=expected["sums"],
        sent=sent,
        last_state=last_state,
    )


def schema_types(prop: Any) -> list[str]:
    """A JSON Schema's `type` as a list (empty when it has none)."""
    kinds = prop.get("type") if isinstance(prop, dict) else None
    return [kinds] if isinstance(kinds, str) else list(kinds or [])


def resolve(prop: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow `#/definitions/...` references (pipelinewise's recursive array items)."""
    while "$ref" in prop:
        prop = root["definitions"][prop["$ref"].rsplit("/", 1)[1]]
    return prop


def without_properties(path: Path, names: tuple[str, ...]) -> Path:
    """The recording without these properties (scalar-valued, not first in their object) in
    its SCHEMA and RECORD lines."""
    text = path.read_text()
    value = r'(\{[^{}]*\}|null|"[^"]*"|-?[0-9][0-9.eE+-]*)'
    for name in names:
        text = re.sub(rf',\s*"{name}":\s*{value}', "", text)
        assert f'"{name}"' not in text, name
    path.write_text(text)
    return path


def same(actual: Any, expected: Any, kind: str) -> bool:
    """Exact equality, types included; NaN equals NaN; JSON numbers compared by their value."""
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    if kind == "JSON":
        return _decimals(actual) == _decimals(expected)
    return type(actual) is type(expected) and actual == expected


def _decimals(value: Any) -> Any:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, list):
        return [_decimals(item) for item in value]
    if isinstance(value, dict):
        return {key: _decimals(item) for key, item in value.items()}
    return value


def field_kind(field: bigquery.SchemaField) -> str:
    """A BigQuery column's kind in test_other_taps' terms (`EXACT`, `REPEATED STRING`, ...)."""
    names = {
        "INTEGER": "INT64",
        "FLOAT": "FLOAT64",
        "BOOLEAN": "BOOL",
        "NUMERIC": "EXACT",
        "BIGNUMERIC": "EXACT",
    }
    kind = names.get(field.field_type, field.field_type)
    return f"REPEATED {kind}" if field.mode == "REPEATED" else kind


def table_id(client: bigquery.Client, dataset: str, stream: str) -> str:
    """The table a stream loads into (`public-typed` -> `public_typed`)."""
    return f"{client.project}.{dataset}.{re.sub(r'[^A-Za-z0-9_]', '_', stream)}"
