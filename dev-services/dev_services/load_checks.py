"""Check newline-delimited JSON against a load job's schema the way BigQuery reads it.

The emulator loads much that BigQuery refuses. `NdjsonChecker` is fed the uploaded bytes
in any chunks (resumable uploads arrive 8 MiB at a time) and records, per row, what
BigQuery would reject. The rules and their sources (BigQuery's "Loading JSON data" and
"Data types" pages):

* REQUIRED fields missing or null; NULL elements in REPEATED fields; an array for a
  non-repeated field, a non-object for a RECORD; unknown fields unless
  `ignoreUnknownValues`;
* INT64 outside its range, or fractional; integers beyond +-(2^53 - 1) written as JSON
  numbers ("pass it as a string to avoid data corruption");
* FLOAT64 non-finite (`1e400`, `NaN`/`Infinity` tokens, which are not JSON);
* NUMERIC beyond 29 integer or 9 fractional digits, BIGNUMERIC beyond its 76.76/38;
* DATE other than `YYYY-MM-DD`; TIMESTAMP, DATETIME, TIME with more than 6 fractional
  digits, a leap second `:60`, an impossible date, trailing garbage; a zone on DATETIME or
  TIME; a TIMESTAMP zone that is neither `Z`, `UTC`, an offset nor an `Area/Location` name
  (abbreviations such as `EST` are refused); a BYTES value that is not base64;
* JSON columns take any JSON value ("loaded with the raw JSON values"), nested at most
  500 levels deep.

Where BigQuery's exact behaviour is not documented the check accepts (integral values
such as `1.0` in INT64, numbers in STRING columns, `"true"` in BOOL), so it never refuses
what BigQuery loads.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
JSON_SAFE_INTEGER = 2**53 - 1
BIGNUMERIC_MAX = Decimal(
    "578960446186580977117854925043439539266.34992332820282019728792003956564819967"
)
MAX_JSON_NESTING = 500
_DATE = r"(\d{4})-(\d{1,2})-(\d{1,2})"
_CLOCK = r"(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d+))?)?"
_DATE_RE = re.compile(rf"{_DATE}")
_TIME_RE = re.compile(_CLOCK)
_DATETIME_RE = re.compile(rf"{_DATE}(?:[ Tt]{_CLOCK})?")
_TIMESTAMP_RE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})" rf"(?:[ Tt]{_CLOCK})?\s*(.*)")
_ZONE_RE = re.compile(r"[Zz]|UTC|[+-]\d{1,2}(?::?\d{2})?|[A-Za-z_]+(?:/[A-Za-z0-9_+-]+)+")
_INTEGER_RE = re.compile(r"[+-]?\d+")


class _Number(str):
    """A JSON number, kept as its exact text."""


class _NonFinite(str):
    """A `NaN`/`Infinity` token: Python's json reads it, BigQuery (and JSON) do not."""


class NdjsonChecker:
    """Checks rows as bytes arrive; keeps the first `keep` violations and counts all."""

    def __init__(
        self, fields: Sequence[Mapping[str, Any]], *, ignore_unknown: bool, keep: int = 5
    ) -> None:
        """Check against `fields` (the job's or the table's schema, REST shape)."""
        self.fields = fields
        self.ignore_unknown = ignore_unknown
        self.keep = keep
        self.rows = 0
        self.errors = 0
        self.messages: list[str] = []
        self._pending = b""
        self._position = 0

    def feed(self, data: bytes) -> None:
        """Check every complete line in `data` (the rest waits for the next chunk)."""
        buffer = self._pending + data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            self._line(buffer[start:end], self._position + start)
            start = end + 1
        self._position += start
        self._pending = buffer[start:]

    def finish(self) -> None:
        """Check the last line if the data did not end with a newline."""
        if self._pending.strip():
            self._line(self._pending, self._position)
        self._pending = b""

    def _line(self, line: bytes, position: int) -> None:
        if not line.strip():
            return
        self.rows += 1
        try:
            row = json.loads(
                line, parse_int=_Number, parse_float=_Number, parse_constant=_NonFinite
            )
        except ValueError as exc:
            problems = [f"invalid JSON: {exc}"]
        else:
            if isinstance(row, dict):
                problems = list(self._record(row, self.fields, ""))
            else:
                problems = ["a row must be a JSON object"]
        if problems:
            self.errors += 1
            if len(self.messages) < self.keep:
                self.messages.append(
                    f"JSON parsing error in row starting at position {position}: "
                    f"{problems[0]} (strict mode)"
                )

    def _record(self, row: Mapping[str, Any], fields: Sequence[Mapping[str, Any]], path: str):
        by_name = {field["name"].lower(): field for field in fields}
        for key, value in row.items():
            field = by_name.get(key.lower())
            if field is None:
                if not self.ignore_unknown:
                    yield f"No such field: {path}{key}."
                continue
            yield from self._field(field, value, f"{path}{field['name']}")
        present = {key.lower() for key in row}
        for field in fields:
            if _mode(field) == "REQUIRED" and field["name"].lower() not in present:
                yield f"Missing required field: {path}{field['name']}."

    def _field(self, field: Mapping[str, Any], value: Any, path: str):
        mode = _mode(field)
        if value is None:
            if mode == "REQUIRED":
                yield f"Only optional fields can be set to NULL. Field: {path}; Value: NULL"
            return
        if mode == "REPEATED":
            if not isinstance(value, list):
                yield f"Array specified for non-repeated field is missing: {path} expects an array"
                return
            for index, item in enumerate(value):
                if item is None:
                    yield f"NULL element in REPEATED field {path} (index {index})"
                else:
                    yield from self._value(field, item, f"{path}[{index}]")
            return
        if isinstance(value, list) and str(field.get("type", "")).upper() != "JSON":
            yield f"Array specified for non-repeated field: {path}."
            return
        yield from self._value(field, value, path)

    def _value(self, field: Mapping[str, Any], value: Any, path: str):
        kind = str(field.get("type", "STRING")).upper()
        if kind in ("RECORD", "STRUCT"):
            if not isinstance(value, dict):
                yield f"Field {path} is a RECORD: expected a JSON object, got {_shown(value)}"
            else:
                yield from self._record(value, field.get("fields") or (), f"{path}.")
            return
        if kind == "JSON":
            if _depth(value) > MAX_JSON_NESTING:
                yield f"Field {path}: JSON nested deeper than {MAX_JSON_NESTING} levels"
            return
        problem = scalar_problem(kind, value)
        if problem:
            yield f"Could not parse {_shown(value)} as {kind} for field {path}: {problem}"


def scalar_problem(kind: str, value: Any) -> str | None:
    """Why BigQuery would not load `value` into a `kind` column (None: it would)."""
    if isinstance(value, dict | list):
        return "a scalar is expected"
    if isinstance(value, _NonFinite):
        return "NaN and Infinity are not JSON numbers"
    checker = _SCALAR_CHECKS.get(kind)
    return checker(value) if checker else None


def _int64(value: Any) -> str | None:
    if isinstance(value, _Number):
        number = Decimal(value)
        if not number.is_finite() or number != number.to_integral_value():
            return "not an integer"
        if abs(number) > JSON_SAFE_INTEGER:
            return "integers beyond +-(2^53 - 1) must be quoted in JSON to load exactly"
        return None
    text = value.strip() if isinstance(value, str) else ""
    if not _INTEGER_RE.fullmatch(text):
        return "not an integer"
    return None if INT64_MIN <= int(text) <= INT64_MAX else "out of INT64 range"


def _float64(value: Any) -> str | None:
    if isinstance(value, bool):
        return "a boolean is no number"
    if isinstance(value, _Number):
        return None if math.isfinite(float(value)) else "out of FLOAT64 range"
    if isinstance(value, str):
        if value.strip() in ("NaN", "Infinity", "-Infinity", "inf", "-inf", "+inf"):
            return None
        try:
            return None if math.isfinite(float(value)) else "out of FLOAT64 range"
        except ValueError:
            return "not a number"
    return "not a number"


def _decimal(integer_digits: int, scale: int, maximum: Decimal | None):
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, str):
            return "not a number"
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return "not a number"
        if not number.is_finite():
            return "not a finite number"
        _sign, digits, exponent = number.as_tuple()
        kept, power = list(digits), int(exponent)
        while power < 0 and len(kept) > 1 and kept[-1] == 0:  # trailing fractional zeros
            kept.pop()
            power += 1
        fraction = max(0, -power)
        whole = max(0, len(kept) + power)
        if fraction > scale:
            return f"more than {scale} fractional digits"
        if whole > integer_digits or (maximum is not None and abs(number) > maximum):
            return "out of range"
        return None

    return check


def _bool(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return None
    return "not a boolean"


def _bytes(value: Any) -> str | None:
    if not isinstance(value, str) or isinstance(value, _Number):
        return "BYTES must be a base64 string"
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "not valid base64"
    return None


def _date(value: Any) -> str | None:
    match = _DATE_RE.fullmatch(value) if _is_text(value) else None
    if match is None:
        return "a DATE must be YYYY-MM-DD"
    return _civil(match.groups(), ())


def _time(value: Any) -> str | None:
    match = _TIME_RE.fullmatch(value) if _is_text(value) else None
    if match is None:
        return "a TIME is [H]H:[M]M[:[S]S[.F]] without a zone"
    return _civil((), match.groups())


def _datetime(value: Any) -> str | None:
    match = _DATETIME_RE.fullmatch(value) if _is_text(value) else None
    if match is None:
        return "a DATETIME is a civil date and time without a zone"
    groups = match.groups()
    return _civil(groups[:3], groups[3:])


def _timestamp(value: Any) -> str | None:
    if isinstance(value, _Number):
        return None if math.isfinite(float(value)) else "out of range"
    match = _TIMESTAMP_RE.fullmatch(value) if _is_text(value) else None
    if match is None:
        return "not a timestamp"
    groups = match.groups()
    zone = groups[7].strip()
    if zone and not _ZONE_RE.fullmatch(zone):
        return f"{zone!r} is no time zone BigQuery reads (Z, UTC, an offset, or Area/Location)"
    return _civil(groups[:3], groups[3:7])


def _civil(date: Sequence[str | None], clock: Sequence[str | None]) -> str | None:
    """Check a civil date and/or time of day given as regex groups."""
    if date:
        try:
            dt.date(*(int(part or 0) for part in date))
        except ValueError:
            return "no such date"
    if clock and clock[0] is not None:
        hour, minute, second, fraction = clock
        if second is not None and int(second) == 60:
            return "leap seconds (:60) are not allowed"
        if int(hour) > 23 or int(minute) > 59 or int(second or 0) > 59:
            return "no such time of day"
        if fraction is not None and len(fraction) > 6:
            return "more than 6 fractional digits (BigQuery keeps microseconds)"
    return None


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and not isinstance(value, _Number)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    return 0


def _mode(field: Mapping[str, Any]) -> str:
    return str(field.get("mode") or "NULLABLE").upper()


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(str(value))
    return text if len(text) <= 60 else text[:57] + "..."


_SCALAR_CHECKS = {
    "INTEGER": _int64,
    "INT64": _int64,
    "FLOAT": _float64,
    "FLOAT64": _float64,
    "NUMERIC": _decimal(29, 9, None),
    "DECIMAL": _decimal(29, 9, None),
    "BIGNUMERIC": _decimal(39, 38, BIGNUMERIC_MAX),
    "BIGDECIMAL": _decimal(39, 38, BIGNUMERIC_MAX),
    "BOOLEAN": _bool,
    "BOOL": _bool,
    "BYTES": _bytes,
    "DATE": _date,
    "TIME": _time,
    "DATETIME": _datetime,
    "TIMESTAMP": _timestamp,
}
