"""Parse Singer message lines; check the fields of the rare messages (SCHEMA, STATE, BATCH, ...).

RECORD messages stay plain dicts: they are the hot path, and the runner reads `stream` and
`record` from them directly. Everything else becomes a small frozen dataclass after its
fields are checked, so the rest of the target never sees a malformed message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from target_bigquery_lite.errors import InputError
from target_bigquery_lite.identifiers import shown


@dataclass(frozen=True)
class SchemaMessage:
    """A stream's JSON Schema, key properties and bookmark properties (its replication key)."""

    stream: str
    schema: dict[str, Any]
    key_properties: tuple[str, ...]
    bookmark_properties: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActivateVersionMessage:
    """Version `version` of a full-table stream is the current one."""

    stream: str
    version: int


@dataclass(frozen=True)
class BatchMessage:
    """Files of raw records for a stream (singer-sdk BATCH, jsonl, plain or gzip)."""

    stream: str
    format: str
    compression: str | None
    manifest: tuple[str, ...]


class NonFinite(float):
    """A `NaN`/`Infinity` token (not JSON, but Python taps write it), kept as what it was."""

    def token(self) -> str:
        """The token's spelling (what BigQuery reads for FLOAT64)."""
        if math.isnan(self):
            return "NaN"
        return "Infinity" if self > 0 else "-Infinity"


class Overflow(float):
    """A JSON number beyond a double's range (`1e400`): no FLOAT64 holds it."""


def _checked_float(text: str) -> float:
    value = float(text)
    return Overflow(value) if value in (math.inf, -math.inf) else value


def parse_line(
    line: bytes,
    line_no: int,
    source: str = "input",
    *,
    exact: bool = False,
    exact_integers: bool = False,
) -> dict[str, Any]:
    """Decode one line (of the input, or of the batch file `source`) into a dict.

    orjson first (fast); the standard library for what orjson refuses but Python taps
    emit: `NaN` and `Infinity` tokens (`NonFinite`) and numbers beyond a double
    (`Overflow`), marked so that the staging step applies the policy for them. `exact`
    (streams with NUMERIC, BIGNUMERIC or JSON columns) reads every number with a fraction
    or exponent as a `Decimal` holding the tap's own digits; `exact_integers` (SCHEMA
    messages, whose bounds may be integers beyond 64 bits, which orjson reads as doubles)
    keeps integers exact and other numbers doubles.

    Raises:
        InputError: when the line is not a JSON object.
    """
    if exact or exact_integers:
        message = _parse_in_python(line, line_no, source, Decimal if exact else _checked_float)
    else:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            message = _parse_in_python(line, line_no, source, _checked_float)
    if not isinstance(message, dict):
        raise InputError(f"{source} line {line_no} is not a JSON object")
    return message


def _parse_in_python(line: bytes, line_no: int, source: str, number: Callable[[str], Any]) -> Any:
    try:
        return json.loads(line, parse_float=number, parse_constant=NonFinite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{source} line {line_no} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(
            f"{source} line {line_no} nests objects or arrays too deeply to parse "
            "(more than about 1,000 levels)"
        ) from None


def stream_of(message: dict[str, Any], line_no: int) -> str:
    """The message's `stream` field.

    Raises:
        InputError: when it is missing or not a non-empty string.
    """
    stream = message.get("stream")
    if not isinstance(stream, str) or not stream:
        kind = message.get("type")
        raise InputError(f"{kind} message on input line {line_no} has no valid 'stream'")
    return stream


def parse_schema(message: dict[str, Any], line_no: int) -> SchemaMessage:
    """Check a SCHEMA message. A missing `key_properties` means none (some taps omit it).

    `bookmark_properties` may be a list or, from some taps, one string.

    Raises:
        InputError: when the stream, schema or key properties are malformed.
    """
    stream = stream_of(message, line_no)
    schema = message.get("schema")
    if not isinstance(schema, dict):
        raise InputError(
            f"SCHEMA for stream '{shown(stream)}' (line {line_no}) has no 'schema' object"
        )
    keys = message.get("key_properties") or []
    if not isinstance(keys, list) or not all(isinstance(key, str) and key for key in keys):
        raise InputError(
            f"SCHEMA for stream '{shown(stream)}' (line {line_no}): bad 'key_properties'"
        )
    bookmarks = message.get("bookmark_properties") or []
    if isinstance(bookmarks, str):
        bookmarks = [bookmarks]
    if not isinstance(bookmarks, list) or not all(
        isinstance(name, str) and name for name in bookmarks
    ):
        raise InputError(
            f"SCHEMA for stream '{shown(stream)}' (line {line_no}): bad 'bookmark_properties'"
        )
    return SchemaMessage(stream, schema, tuple(keys), tuple(bookmarks))


def parse_activate_version(message: dict[str, Any], line_no: int) -> ActivateVersionMessage:
    """Check an ACTIVATE_VERSION message.

    Raises:
        InputError: when the version is not an integer.
    """
    stream = stream_of(message, line_no)
    version = message.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(
            f"ACTIVATE_VERSION for '{shown(stream)}' (line {line_no}) has no integer version"
        )
    return ActivateVersionMessage(stream, version)


def parse_batch(message: dict[str, Any], line_no: int) -> BatchMessage:
    """Check a BATCH message: jsonl encoding and a list of file URLs.

    Raises:
        InputError: when the encoding is missing or not jsonl, or the manifest is not a list.
    """
    stream = stream_of(message, line_no)
    encoding = message.get("encoding")
    if not isinstance(encoding, dict) or not isinstance(encoding.get("format"), str):
        raise InputError(f"BATCH for '{shown(stream)}' (line {line_no}) has no 'encoding.format'")
    if encoding["format"] != "jsonl":
        raise InputError(
            f"BATCH for '{shown(stream)}' (line {line_no}): format '{encoding['format']}' is not "
            "supported (only jsonl)"
        )
    manifest = message.get("manifest")
    if not isinstance(manifest, list) or not all(isinstance(url, str) for url in manifest):
        raise InputError(f"BATCH for '{shown(stream)}' (line {line_no}) has no list 'manifest'")
    compression = encoding.get("compression")
    return BatchMessage(stream, "jsonl", compression, tuple(manifest))
