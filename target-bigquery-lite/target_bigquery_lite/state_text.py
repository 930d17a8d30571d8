"""A STATE message's `value`, as the exact bytes the tap wrote.

A state goes back to the tap on its next run, so it must not change on the way: a Decimal
bookmark re-encoded through a float can land *past* rows the tap never sent
(`12345678901234567.89` -> `1.2345678901234568e+16`), `1e400` and `NaN` would become
`null`. So the value is never decoded and re-encoded: its bytes are cut out of the line.

msgspec finds the span of `value` for standard JSON (a `Raw` field, C speed: some taps send
a STATE per record). Lines msgspec refuses but Python taps write (`NaN`, `Infinity`) are
scanned here instead, after the line was checked as JSON by `messages.parse_line`.
"""

from __future__ import annotations

import json

import msgspec
import orjson

from target_bigquery_lite.errors import InputError

_EMPTY = (b"null", b"{}")


class _Envelope(msgspec.Struct):
    value: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_decode_envelope = msgspec.json.Decoder(_Envelope).decode


def state_value(line: bytes, line_no: int) -> bytes:
    """The raw JSON text of the STATE message's `value`.

    Raises:
        InputError: when the message has no `value`.
    """
    try:
        raw = _decode_envelope(line).value
    except (msgspec.DecodeError, UnicodeDecodeError):
        raw = _scan_value(line)
    if raw is msgspec.UNSET or raw is None:
        raise InputError(f"STATE message on input line {line_no} has no 'value'")
    return bytes(raw)


def is_empty(value: bytes) -> bool:
    """Whether a state is empty (`null` or `{}`): never passed on. `0`, `""`, `[]` are not."""
    return b"".join(value.split()) in _EMPTY


def _scan_value(line: bytes) -> bytes | None:
    """The bytes of the top-level member `"value"` of a JSON object line (None if absent).

    Strings are skipped with their escapes; nesting is counted outside strings. Only used
    for lines already known to parse (with NaN/Infinity allowed), so it needs no errors.
    """
    text = line.decode("utf-8", "surrogateescape")
    depth, index, key, found = 0, 0, None, None
    start = -1
    while index < len(text):
        char = text[index]
        if char == '"':
            end = _string_end(text, index)
            if depth == 1 and found is None and key is None:
                key = json.loads(text[index : end + 1])
            index = end + 1
            continue
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0 and start >= 0:
                found = text[start:index].strip()
        elif char == ":" and depth == 1 and key is not None:
            if key == "value":
                start = index + 1
            key = None
        elif char == "," and depth == 1:
            if start >= 0:
                found = text[start:index].strip()
                break
            key = None
        if found is not None:
            break
        index += 1
    return None if found is None else found.encode("utf-8", "surrogateescape")


def _string_end(text: str, start: int) -> int:
    """The index of the quote closing the JSON string that opens at `start`."""
    index = start + 1
    while text[index] != '"':
        index += 2 if text[index] == "\\" else 1
    return index


# Keys of a stream's bookmark that do not say where an incremental sync stands.
_NOT_POSITIONS = frozenset(
    {"version", "last_replication_method", "replication_key", "initial_full_table_complete",
     "starting_replication_value", "replication_key_signpost", "progress_markers", "context"}
)  # fmt: skip


def bookmarked_streams(value: bytes, streams: set[str], *, strict: bool) -> list[str]:
    """Which of `streams` the state holds an incremental position for (sorted).

    Singer taps keep positions under `bookmarks.<stream>`: singer-sdk as
    `replication_key_value` (also inside `partitions`), singer-python taps under keys of
    their own (`lsn`, `xmin`, a column name). Not `strict`: only `replication_key_value`
    counts (states in the middle of a run: a full-table sync may keep a resume point there);
    `strict`: any key but the bookkeeping ones in `_NOT_POSITIONS` with a value.
    """
    try:
        state = orjson.loads(value)
    except orjson.JSONDecodeError:
        state = json.loads(value, parse_constant=lambda _: None)
    bookmarks = state.get("bookmarks") if isinstance(state, dict) else None
    if not isinstance(bookmarks, dict):
        return []
    return sorted(name for name in streams if _has_position(bookmarks.get(name), strict=strict))


def _has_position(entry: object, *, strict: bool) -> bool:
    if not isinstance(entry, dict):
        return False
    if entry.get("replication_key_value") is not None:
        return True
    partitions = entry.get("partitions")
    if isinstance(partitions, list) and any(_has_position(p, strict=strict) for p in partitions):
        return True
    return strict and any(
        value not in (None, "", [], {}) for key, value in entry.items()
        if key not in _NOT_POSITIONS and key != "partitions"
    )  # fmt: skip
