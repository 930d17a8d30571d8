r"""Values into the form BigQuery loads: the policy for what a column cannot hold as sent.

A record that passed its schema can still hold values a BigQuery load refuses with only a
summary error, or loads changed. Each case has one rule here (README: "Using it with other
taps"), applied per column type, decided once per SCHEMA:

| value                                      | staged as                                    |
|--------------------------------------------|----------------------------------------------|
| NULL element of an array (REPEATED)        | dropped: BigQuery arrays cannot hold NULL     |
| number for NUMERIC/BIGNUMERIC              | its own digits, as a string; beyond the      |
|                                            | column's range or scale: refused             |
| integer beyond +-(2^53 - 1) for INT64      | a string (BigQuery's rule for exact loads)   |
| `NaN`/`Infinity` token for FLOAT64         | the string BigQuery reads (`"NaN"`, ...)     |
| `NaN`/`Infinity` anywhere else, `1e400`    | refused                                      |
| TIME with a UTC offset (`12:00:00+05:30`)  | the same instant in UTC (`06:30:00`)         |
| TIMESTAMP, DATE, TIME BigQuery cannot read | refused (leap seconds, impossible dates,     |
|                                            | more than 6 fractional digits, garbage)      |
| JSON column: any JSON value, scalars too   | as sent, numbers digit for digit; a string   |
|                                            | as its JSON text (`"\"a\""`), which loads read |

Refusals raise `UnloadableError` naming the field; the stream spec adds stream and record.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from decimal import Context, Decimal, InvalidOperation
from typing import Any

import orjson
from google.cloud.bigquery import SchemaField

from target_bigquery_lite.messages import NonFinite, Overflow

JSON_SAFE_INTEGER = 2**53 - 1
EXACT_TYPES = frozenset({"NUMERIC", "BIGNUMERIC"})
# (integer digits, fractional digits, largest magnitude) BigQuery's exact types hold.
_EXACT_LIMITS = {
    "NUMERIC": (29, 9, Decimal("99999999999999999999999999999.999999999")),
    "BIGNUMERIC": (
        39,
        38,
        Decimal("578960446186580977117854925043439539266.34992332820282019728792003956564819967"),
    ),
}
_CLOCK = r"([0-9]{1,2}):([0-9]{1,2})(?::([0-9]{1,2})(?:\.([0-9]+))?)?"
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})")
_TIME_RE = re.compile(_CLOCK + r"\s*([Zz]|[+-][0-9]{1,2}(?::?[0-9]{2})?)?")
_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})(?:[ Tt]" + _CLOCK + r")?\s*(.*)"
)
_ZONE_RE = re.compile(r"[Zz]|UTC|[+-][0-9]{1,2}(?::?[0-9]{2})?|[A-Za-z_]+(?:/[A-Za-z0-9_+-]+)+")

_EXACT = Context(prec=200)  # enough digits for BIGNUMERIC's range over a step of 1e-38
_WIDER_HINT = (
    "; a schema hint such as `multipleOf: 1e-38` (Meltano: the tap's `schema` extra) makes "
    "the column BIGNUMERIC"
)
Shaper = Callable[[dict[str, Any]], dict[str, Any]]
_Convert = Callable[[Any, str], Any]
Checker = Callable[[Any, str], Any]


class UnloadableError(ValueError):
    """A value BigQuery cannot hold in its column; the message names the field."""


def has_exact_columns(fields: Any) -> bool:
    """Whether records need parsing with every number's own digits (`Decimal`s).

    So when the fields hold NUMERIC, BIGNUMERIC or JSON columns, at any depth.
    """
    return any(
        field.field_type in (*EXACT_TYPES, "JSON") or has_exact_columns(field.fields)
        for field in fields
    )


def shaper_for(
    fields: tuple[SchemaField, ...], *, careful: bool, steps: dict[str, Decimal] | None = None
) -> Shaper | None:
    """The function that puts a record's values in their staged form (None: nothing to do).

    `careful` also handles what only a slowly parsed line or a failed fast encode holds:
    non-finite floats, integers beyond 2^53 (or 64 bits). Records of streams with exact
    columns hold `Decimal`s for every fraction, so FLOAT64 columns convert them back.
    `steps`: the `multipleOf` of top-level exact columns (by lower-case name), checked
    exactly.
    """
    floats = careful or has_exact_columns(fields)
    converters = _converters(fields, careful, floats, steps or {})
    if not converters:
        return None

    def shape(record: dict[str, Any]) -> dict[str, Any]:
        for name, convert in converters:
            value = record.get(name)
            if value is not None:
                record[name] = convert(value, name)
        return record

    return shape


def value_checks(fields: tuple[SchemaField, ...]) -> list[tuple[str, Checker]] | None:
    """The checks a stream's values need, if checks are all they need (None: conversions).

    TIMESTAMP and DATE columns only need checking; a stream with nothing else to shape can
    have its BATCH rows checked a block at a time (see `batch_rows`).
    """
    checks: list[tuple[str, Checker]] = []
    for name, convert in _converters(fields, careful=False, floats=has_exact_columns(fields)):
        if convert not in _CHECKS:
            return None
        checks.append((name, convert))
    return checks


def _converters(
    fields: Any, careful: bool, floats: bool, steps: dict[str, Decimal] | None = None
) -> list[tuple[str, _Convert]]:
    """(name, converter) for the fields that need converting."""
    found = []
    for field in fields:
        convert = _converter(field, careful, floats, (steps or {}).get(field.name.lower()))
        if convert is not None:
            found.append((field.name, convert))
    return found


def _converter(
    field: SchemaField, careful: bool, floats: bool, step: Decimal | None = None
) -> _Convert | None:
    one = _one_converter(field, careful, floats, step)
    if field.mode != "REPEATED":
        return one

    def repeated(value: Any, path: str) -> Any:
        if type(value) is not list:
            return value
        if None in value:
            value = [item for item in value if item is not None]
        if one is None:
            return value
        return [one(item, f"{path}[{index}]") for index, item in enumerate(value)]

    return repeated


def _one_converter(
    field: SchemaField, careful: bool, floats: bool, step: Decimal | None = None
) -> _Convert | None:
    kind = field.field_type
    if kind in ("RECORD", "STRUCT"):
        inner = _converters(field.fields, careful, floats)
        if not inner:
            return None

        def record(value: Any, path: str) -> Any:
            if type(value) is dict:
                for name, convert in inner:
                    item = value.get(name)
                    if item is not None:
                        value[name] = convert(item, f"{path}.{name}")
            return value

        return record
    if kind in EXACT_TYPES:
        return _exact_converter(kind, step)
    return {
        "TIMESTAMP": _timestamp,
        "DATE": _date,
        "TIME": _time,
        "JSON": _json_value if careful else _json,
        "FLOAT64": _float if floats else None,
        "FLOAT": _float if floats else None,
        "INT64": _int64 if careful else None,
        "INTEGER": _int64 if careful else None,
    }.get(kind)


def _exact_converter(kind: str, step: Decimal | None) -> _Convert:
    integer_digits, scale, largest = _EXACT_LIMITS[kind]

    def exact(value: Any, path: str) -> str:
        if isinstance(value, NonFinite | bool):
            raise UnloadableError(f"field '{path}': {_shown(value)} is no number {kind} can hold")
        try:
            number = value if isinstance(value, Decimal) else Decimal(_text_of(value))
        except InvalidOperation:
            raise UnloadableError(
                f"field '{path}': {_shown(value)} is not a decimal number"
            ) from None
        if not number.is_finite():
            raise UnloadableError(f"field '{path}': {_shown(value)} is no number {kind} can hold")
        exponent = number.as_tuple().exponent
        fraction = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if fraction > scale:  # trailing zeros beyond the scale are dropped, nothing else
            kept = _EXACT.quantize(number, Decimal(1).scaleb(-scale))
            if kept != number:
                raise UnloadableError(
                    f"field '{path}': {_shown(value)} has more than the {scale} fractional "
                    f"digits {kind} keeps{_WIDER_HINT if kind == 'NUMERIC' else ''}"
                )
            number = kept
        if number.copy_abs() > largest:
            raise UnloadableError(
                f"field '{path}': {_shown(value)} is beyond {kind}'s range "
                f"({integer_digits} integer digits){_WIDER_HINT if kind == 'NUMERIC' else ''}"
            )
        if step is not None and _EXACT.remainder(number, step):
            raise UnloadableError(f"field '{path}': {_shown(value)} is not a multiple of {step}")
        return format(number, "f")

    return exact


def _text_of(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value).strip()


def _float(value: Any, path: str) -> Any:
    if isinstance(value, NonFinite):
        return value.token()
    if isinstance(value, Overflow):
        raise UnloadableError(f"field '{path}': {_shown(value)} is beyond FLOAT64's range")
    if isinstance(value, Decimal):
        as_float = float(value)
        if math.isinf(as_float):
            raise UnloadableError(f"field '{path}': {value} is beyond FLOAT64's range")
        return as_float
    if type(value) is float and not math.isfinite(value):
        return NonFinite(value).token()
    return value


def _int64(value: Any, path: str) -> Any:
    if type(value) is int and not -JSON_SAFE_INTEGER <= value <= JSON_SAFE_INTEGER:
        return str(value)
    return value


def _json(value: Any, path: str) -> Any:
    """Any JSON value, a string as its JSON text: a load reads a JSON column's string so.

    Decimals keep their digits; integers of any size are written out.
    """
    if type(value) is str:
        return orjson.dumps(value).decode()
    return _json_value(value, path)


def _json_value(value: Any, path: str) -> Any:
    kind = type(value)
    if kind is dict:
        return {key: _json_value(item, f"{path}.{key}") for key, item in value.items()}
    if kind is list:
        return [_json_value(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, NonFinite | Overflow):
        raise UnloadableError(f"field '{path}': {_shown(value)} is not a JSON number")
    if kind is Decimal or (kind is int and not -JSON_SAFE_INTEGER <= value <= JSON_SAFE_INTEGER):
        return orjson.Fragment(str(value))
    return value


def check_timestamp(value: Any, path: str) -> None:
    """Refuse a value BigQuery cannot read into a TIMESTAMP column."""
    if type(value) is not str:
        raise UnloadableError(f"'{path}' {_shown(value)} is not a timestamp string")
    _timestamp(value, path)


def _timestamp(value: Any, path: str) -> Any:
    if type(value) is not str:
        return value
    match = _TIMESTAMP_RE.fullmatch(value)
    if match is None:
        raise UnloadableError(f"field '{path}': {_shown(value)} is not a timestamp BigQuery reads")
    groups = match.groups()
    zone = groups[7].strip()
    if zone and not _ZONE_RE.fullmatch(zone):
        raise UnloadableError(
            f"field '{path}': {_shown(value)} ends in {zone!r}, no time zone BigQuery reads "
            "(Z, UTC, an offset or an Area/Location name)"
        )
    _check_civil(value, path, groups[:3], groups[3:7])
    return value


def _date(value: Any, path: str) -> Any:
    if type(value) is not str:
        return value
    match = _DATE_RE.fullmatch(value)
    if match is None:
        raise UnloadableError(f"field '{path}': {_shown(value)} is not a date as YYYY-MM-DD")
    _check_civil(value, path, match.groups(), ())
    return value


def _time(value: Any, path: str) -> Any:
    if type(value) is not str:
        return value
    match = _TIME_RE.fullmatch(value.strip())
    if match is None:
        raise UnloadableError(
            f"field '{path}': {_shown(value)} is not a time of day as HH:MM[:SS[.ffffff]] "
            "(with or without a UTC offset)"
        )
    hour, minute, second, fraction, zone = match.groups()
    _check_civil(value, path, (), (hour, minute, second, fraction))
    if zone is None:
        return value
    offset = dt.timedelta()
    if zone not in "Zz":
        digits = zone[1:].replace(":", "")
        hours, minutes = (digits, "0") if len(digits) <= 2 else (digits[:-2], digits[-2:])
        offset = dt.timedelta(hours=int(hours), minutes=int(minutes))
        if zone[0] == "-":
            offset = -offset
    local = dt.datetime(2000, 1, 2, int(hour), int(minute), int(second or 0))
    text = (local - offset).strftime("%H:%M:%S")
    return f"{text}.{fraction}" if fraction is not None else text


def _check_civil(value: str, path: str, date: Any, clock: Any) -> None:
    if date:
        try:
            dt.date(*(int(part) for part in date))
        except ValueError:
            raise UnloadableError(f"field '{path}': {_shown(value)} is no such date") from None
    if clock and clock[0] is not None:
        hour, minute, second, fraction = clock
        if second is not None and int(second) == 60:
            raise UnloadableError(
                f"field '{path}': {_shown(value)} holds a leap second (:60), which BigQuery "
                "does not read"
            )
        if int(hour) > 23 or int(minute) > 59 or int(second or 0) > 59:
            raise UnloadableError(f"field '{path}': {_shown(value)} is no such time of day")
        if fraction is not None and len(fraction) > 6:
            raise UnloadableError(
                f"field '{path}': {_shown(value)} has more than 6 fractional digits of a second "
                "(BigQuery keeps microseconds)"
            )


_CHECKS = (_timestamp, _date)


def _shown(value: Any) -> str:
    if isinstance(value, NonFinite):
        return value.token()
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
