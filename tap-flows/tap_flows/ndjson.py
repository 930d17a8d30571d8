"""Turn the byte chunks of an NDJSON body into parsed records, whole lines only.

The flows API ends every line, the last one included, with a newline. A body that
stops in the middle of a line was cut short, so its tail is never parsed: a row is
either complete or not emitted at all. A line that is not JSON is the server's (or a
proxy's) fault and fails with its line number and a short excerpt.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

CHUNK_BYTES = 1 << 20
"""Bytes read from the socket per parse step: ~7,000 rows, one `orjson` call per line."""

MAX_LINE_BYTES = 1 << 20
"""A flows row is ~150 bytes; a longer 'line' means the body is not NDJSON at all."""

_EXCERPT_BYTES = 80


class TruncatedBodyError(Exception):
    """The body ended in the middle of a line: the connection was cut, try again."""


class BadLineError(Exception):
    """A line of the body is not a JSON value; retrying would get the same line."""


def excerpt(line: bytes) -> str:
    """A short, printable view of a line for error messages."""
    text = repr(line[:_EXCERPT_BYTES])
    return text + ("..." if len(line) > _EXCERPT_BYTES else "")


def iter_record_chunks(chunks: Iterable[bytes]) -> Iterator[list[dict[str, Any]]]:
    """Parse the complete lines of each chunk, a whole chunk at a time.

    Parsing a chunk's lines with one `map(orjson.loads, ...)` call keeps the per-row
    cost to orjson's own; lines are numbered only when one fails to parse.

    Args:
        chunks: The body as it arrives, in chunks of any size.

    Yields:
        The records of the complete lines received so far (possibly an empty list).

    Raises:
        BadLineError: A line is not JSON, or is longer than MAX_LINE_BYTES.
        TruncatedBodyError: The body ended after a partial line.
    """
    pending = b""
    lines_before = 0
    for chunk in chunks:
        lines = (pending + chunk).split(b"\n") if pending else chunk.split(b"\n")
        pending = lines.pop()
        try:
            records = list(map(orjson.loads, lines))
        except orjson.JSONDecodeError:
            records = _parse_numbered(lines, lines_before)
        lines_before += len(lines)
        if len(pending) > MAX_LINE_BYTES:
            msg = (
                f"line {lines_before + 1} of the response is longer than {MAX_LINE_BYTES} "
                f"bytes, so the body is not NDJSON: {excerpt(pending)}"
            )
            raise BadLineError(msg)
        yield records
    if pending:
        msg = (
            f"the response ended in the middle of line {lines_before + 1} "
            f"({len(pending)} bytes without a newline)"
        )
        raise TruncatedBodyError(msg)


def _parse_numbered(lines: list[bytes], lines_before: int) -> list[dict[str, Any]]:
    """Parse line by line, to name the first line that is not JSON."""
    records = []
    for number, line in enumerate(lines, start=lines_before + 1):
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            msg = f"line {number} of the response is not valid JSON: {excerpt(line)}"
            raise BadLineError(msg) from None
    return records
