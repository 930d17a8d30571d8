"""Real taps' recorded output loads into BigQuery holding what the source held, cell by cell.

The fixtures in tests/data/taps (`make tap-fixtures` records them) are the stdout of
meltanolabs-tap-postgres and pipelinewise-tap-postgres (a singer-python writer: Draft-4
schemas) reading a PostgreSQL 15 table of every common type, and of tap-dbf reading a DBF file
of flows-api's generated rows; next to each, every source cell as exact text. `EXPECTED` is the
one place that says what BigQuery holds for a source value (the README's policy table);
`TAP_CHANGES` lists what a tap itself changes before the target sees a value, so a tap's loss
is never counted against the target, nor hidden.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery

from tests.conftest import run_target
from tests.recorded_taps import (
    MANIFEST,
    TAPS,
    Column,
    Fixture,
    exact_json,
    field_kind,
    fixture_input,
    load_fixture,
    resolve,
    same,
    schema_types,
    table_id,
    without_properties,
)

# The target setting that makes `number` columns without a decimal hint exact
# (NUMERIC/BIGNUMERIC, digit for digit) instead of FLOAT64.
EXACT_NUMBERS_CONFIG: dict[str, Any] = {"exact_numbers": True}

ML, PW, DBF = "meltanolabs-tap-postgres", "pipelinewise-tap-postgres", "tap-dbf"
NAN_AND_INFINITIES = frozenset({"NaN", "Infinity", "-Infinity"})
DECIMAL_FORMATS = frozenset({"decimal", "x-singer.decimal"})

# ---- the policy: which column a property becomes, what it holds for a source value --------


def column_kind(prop: dict[str, Any], root: dict[str, Any], exact: bool) -> str:
    """`INT64`, `FLOAT64`, `EXACT` (NUMERIC or BIGNUMERIC), `REPEATED <kind>`, `JSON`, ..."""
    prop = resolve(prop, root)
    types = [kind for kind in schema_types(prop) if kind != "null"]
    if len(types) != 1:
        return "JSON"  # unions, `{}`: any JSON value, scalars included
    kind = types[0]
    if kind == "array":
        items = resolve(prop.get("items") or {}, root)
        if not schema_types(items) or "array" in schema_types(items):
            return "JSON"  # nested or unknown items: BigQuery has no arrays of arrays
        return "REPEATED " + column_kind(items, root, exact)
    if kind == "number":
        multiple = prop.get("multipleOf", 1)
        hinted = 0 < multiple < 1 or prop.get("format") in DECIMAL_FORMATS
        return "EXACT" if hinted or exact else "FLOAT64"
    if kind == "string":
        fmt = prop.get("format")
        if fmt in DECIMAL_FORMATS:
            return "EXACT"
        return {"date-time": "TIMESTAMP", "date": "DATE", "time": "TIME"}.get(fmt, "STRING")
    return {"integer": "INT64", "boolean": "BOOL"}.get(kind, "JSON")


def as_number(text: str, sent: Any, kind: str) -> Any:
    if kind == "INT64":
        return int(text)
    return float(text) if kind == "FLOAT64" else Decimal(text)  # EXACT: digit for digit


def as_float(text: str, sent: Any, kind: str) -> float | Decimal:
    return Decimal(text) if kind == "EXACT" else float(text)  # NaN and infinities included


def as_timestamp(text: str, sent: Any, kind: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def as_local_timestamp(text: str, sent: Any, kind: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)  # sent as UTC by both taps


def as_date(text: str, sent: Any, kind: str) -> dt.date:
    day = dt.date.fromisoformat(text[:10])
    return dt.datetime.combine(day, dt.time(), dt.UTC) if kind == "TIMESTAMP" else day


def as_utc_time(text: str, sent: Any, kind: str) -> dt.time:
    local = dt.datetime.combine(dt.date(2000, 1, 1), dt.time.fromisoformat(text))
    return local.astimezone(dt.UTC).time()  # TIME has no offset: normalized to UTC


def as_array(text: str, sent: Any, kind: str) -> Any:
    elements = exact_json(text)
    if kind == "JSON":
        return elements
    return [element for element in elements if element is not None]  # arrays cannot hold NULL


EXPECTED: dict[str, Callable[[str, Any, str], Any]] = {
    "smallint": lambda text, sent, kind: int(text),
    "integer": lambda text, sent, kind: int(text),
    "bigint": lambda text, sent, kind: int(text),
    "numeric": as_number,
    "currency": as_number,
    "double precision": as_float,
    "real": as_float,
    "double": as_float,
    "boolean": lambda text, sent, kind: text in ("t", "true"),
    "logical": lambda text, sent, kind: text == "true",
    "timestamp with time zone": as_timestamp,
    "timestamp without time zone": as_local_timestamp,
    "date": as_date,
    "time without time zone": lambda text, sent, kind: dt.time.fromisoformat(text),
    "time with time zone": as_utc_time,
    "json": lambda text, sent, kind: exact_json(text),  # scalars too: lossless
    "jsonb": lambda text, sent, kind: exact_json(text),
    "interval": lambda text, sent, kind: sent,  # STRING exactly as the tap sends it
    "bytea": lambda text, sent, kind: sent,
}  # every other type (text, varchar, char(n), uuid, inet, cidr, money, enums): the text


def expected_value(column: Column, text: str | None, sent: Any, kind: str) -> Any:
    """What BigQuery should hold for a source cell (after the tap's own changes)."""
    if text is None:
        return [] if kind.startswith("REPEATED") else None
    if column.type.endswith("[]"):
        return as_array(text, sent, kind)
    return EXPECTED.get(column.type.split("(")[0], lambda text, sent, kind: text)(text, sent, kind)


def bigquery_column(name: str) -> str:
    """The README's naming rule, written out again: accents on Latin letters are folded
    (`naïve` -> `naive`), letters, digits and marks of other scripts and case stay, anything
    else becomes `_`, and a leading digit gets a `_` (`1col` -> `_1col`)."""

    def one(char: str) -> str:
        if char.isascii():
            return char if char.isalnum() or char == "_" else "_"
        base = "".join(
            c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
        )
        if base and base.isascii() and base.isalnum():
            return base
        return char if unicodedata.category(char)[0] in "LNM" else "_"

    result = "".join(one(char) for char in unicodedata.normalize("NFC", name))
    return f"_{result}" if result[0].isdigit() else result


# ---- what the taps themselves change -------------------------------------------------------


@dataclass(frozen=True)
class TapChange:
    """Source values a tap alters before the target sees them; `conveyed` is what it sends."""

    types: tuple[str, ...]  # source types (without their modifiers); "[]": any array
    when: Callable[[str | None], bool]
    conveyed: Callable[[str | None], str] | None  # None: sent as null
    why: str

    def applies(self, pg_type: str, text: str | None) -> bool:
        kind = "[]" if pg_type.endswith("[]") else pg_type.split("(", maxsplit=1)[0]
        return kind in self.types and self.when(text)


_FLOATS = ("double precision", "real")
_JSON_NULL = TapChange(("json", "jsonb"), lambda t: t == "null", None, "JSON null sent as NULL")
TAP_CHANGES: dict[str, tuple[TapChange, ...]] = {
    ML: (
        TapChange((*_FLOATS, "numeric"), NAN_AND_INFINITIES.__contains__, None,
                  "NaN and infinities are sent as null"),
        _JSON_NULL,
    ),
    PW: (
        TapChange(_FLOATS, NAN_AND_INFINITIES.__contains__, None,
                  "NaN and infinities are sent as null"),
        TapChange(("numeric",), lambda t: t == "NaN", None, "numeric NaN is sent as null"),
        _JSON_NULL,
        TapChange(("timestamp with time zone", "timestamp without time zone"),
                  lambda t: t is not None and t > "9999-12-31 23:59:59.999",
                  lambda t: f"{t[:23]}{t[26:]}" if t else "",
                  "timestamps after 9999-12-31 23:59:59.999 are clamped to it"),
        TapChange(("[]",), lambda t: t is None, lambda t: "[]", "a NULL array is sent as []"),
        TapChange(("interval", "bytea"), lambda t: True, None, "'unsupported' types: not sent"),
    ),
    DBF: (
        TapChange(("numeric",), lambda t: t is not None and "." in t,
                  lambda t: repr(float(t or 0)), "dbfread reads N fields with decimals as doubles"),
    ),
}  # fmt: skip


def conveyed(fixture: Fixture, column: Column, text: str | None) -> tuple[str | None, bool]:
    """(what the tap effectively sent, as source text; whether the tap changed the value)."""
    for change in TAP_CHANGES.get(fixture.tap, ()):
        if change.applies(column.type, text):
            return (change.conveyed(text) if change.conveyed else None), True
    return text, False


# ---- the cases ------------------------------------------------------------------------------

DEFAULT, EXACT = "default", "exact"
# (fixture, settings, properties left out of the recording); every other fixture must fail
LOADS = [
    (f"{ML}__typed", DEFAULT, ()),
    (f"{ML}__typed_incremental", DEFAULT, ()),
    (f"{ML}__fractional_times", DEFAULT, ()),
    (f"{ML}__special_floats", DEFAULT, ()),
    (f"{ML}__special_numerics", DEFAULT, ()),
    (f"{ML}__odd_columns", DEFAULT, ()),
    (f"{ML}__decimals", DEFAULT, ()),
    (f"{ML}__decimals", EXACT, ()),
    (f"{ML}__decimals_batch", EXACT, ()),
    # c_numeric_plain: numeric without scale, BIGNUMERIC (multipleOf 1e-38); its values (30
    # integer and 30 fractional digits) fit BigQuery's BIGNUMERIC, not the emulator's (DuckDB
    # DECIMAL(38,18)); the strict front checks BigQuery's rule, test_values the digits staged
    (f"{PW}__typed", DEFAULT, ("c_numeric_plain",)),
    (f"{PW}__int_matrix", DEFAULT, ()),
    (f"{PW}__special_floats", DEFAULT, ()),
    (f"{PW}__odd_columns", DEFAULT, ()),
    (f"{PW}__decimals", DEFAULT, ()),
    (f"{DBF}__flows", DEFAULT, ("STAMP",)),  # STAMP: see FAILS
]
# (fixture, settings) -> what its one-line error must name (regular expressions): stream,
# record number, field
FAILS = {
    # declared `array of integer`, sent 2-D arrays
    (f"{ML}__int_matrix", DEFAULT): ("'public-int_matrix'", "record 1", "c_(int|text)_matrix"),
    # exact numbers for every plain `number`: NUMERIC, which keeps 9 fractional digits, not
    # the 15 of 3.141592653589793
    (f"{ML}__typed", EXACT): ("'public-typed'", "record 1", "c_numeric_plain", "BIGNUMERIC"),
    # a bare `Infinity` (not JSON) for a numeric column
    (f"{PW}__special_numerics", DEFAULT): (
        "'public-special_numerics'",
        "record 3",
        "c_numeric_plain",
    ),
    # a DBF T (datetime) field declared `format: time`, sent as date-times
    (f"{DBF}__flows", DEFAULT): ("'flows'", "record 1", "STAMP"),
    # exact numbers: NUMERIC keeps 9 fractional digits, dbfread's doubles have up to 17
    (f"{DBF}__flows", EXACT): ("'flows'", "record 1", "RATIO", "BIGNUMERIC"),
}


def states_before_data(name: str) -> list[Any]:
    """The STATE values the tap sent before its first RECORD or BATCH (nothing to wait for)."""
    states = []
    for line in (TAPS / f"{name}.singer").read_text().splitlines():
        message = json.loads(line) if line.strip() else {}
        if message.get("type") in ("RECORD", "BATCH"):
            break
        if message.get("type") == "STATE":
            states.append(message["value"])
    return states


def mismatches(
    fixture: Fixture, client: bigquery.Client, dataset: str, exact: bool, left_out: tuple[str, ...]
) -> list[str]:
    """Every way the table differs from the source: columns, types, cells and decimal sums."""
    table = client.get_table(table_id(client, dataset, fixture.stream))
    fields = {field.name: field for field in table.schema}
    rows = [dict(row.items()) for row in client.list_rows(table)]
    by_key = {tuple(row[bigquery_column(k)] for k in fixture.key): row for row in rows}
    found = (
        []
        if len(rows) == len(fixture.source_rows)
        else [f"{len(rows)} rows in BigQuery, {len(fixture.source_rows)} in the source"]
    )
    for column in (c for c in fixture.columns if c.name not in left_out):
        name = bigquery_column(column.name)
        kind = column_kind(fixture.schema["properties"][column.name], fixture.schema, exact)
        if name not in fields or field_kind(fields[name]) != kind:
            have = field_kind(fields[name]) if name in fields else f"missing {sorted(fields)}"
            found.append(f"{column.name}: column {name!r} should be {kind}, is {have}")
            continue
        changed_by_tap = False
        for source in fixture.source_rows:
            key = fixture.key_of(source)
            sent = fixture.sent[key].get(column.name)
            text, changed = conveyed(fixture, column, source[column.name])
            changed_by_tap |= changed
            want = expected_value(column, text, sent, kind)
            got = by_key.get(key, {}).get(name)
            if not same(got, want, kind):
                found.append(
                    f"{column.name} {key}: BigQuery holds {got!r}, expected {want!r} "
                    f"(source {source[column.name]!r}, tap sent {sent!r})"
                )
        if kind == "EXACT" and column.name in fixture.sums and not changed_by_tap:
            sql = (
                f"SELECT SUM(`{name}`) AS total FROM `{table_id(client, dataset, fixture.stream)}`"
            )
            total = next(iter(client.query(sql).result()))["total"]
            if total != Decimal(fixture.sums[column.name] or 0):
                found.append(
                    f"SUM({column.name}): BigQuery {total}, source {fixture.sums[column.name]}"
                )
    return found


@pytest.mark.parametrize(("name", "mode", "left_out"), LOADS, ids=[f"{n}-{m}" for n, m, _ in LOADS])
def test_recorded_tap_output_loads_exactly(
    name: str,
    mode: str,
    left_out: tuple[str, ...],
    tmp_path: Path,
    target_config: Callable[..., Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    fixture = load_fixture(name)
    config = target_config(**(EXACT_NUMBERS_CONFIG if mode == EXACT else {}))
    result = run_target(config, without_properties(fixture_input(name, tmp_path), left_out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    if fixture.last_state:
        assert result.states[-1] == fixture.last_state
    found = mismatches(fixture, bq_client, bq_dataset, mode == EXACT, left_out)
    assert not found, f"{len(found)} differences:\n" + "\n".join(found[:60])


@pytest.mark.parametrize(
    ("name", "mode"), sorted(FAILS), ids=[f"{n}-{m}" for n, m in sorted(FAILS)]
)
def test_recorded_tap_output_fails_clearly(
    name: str,
    mode: str,
    tmp_path: Path,
    target_config: Callable[..., Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    config = target_config(**(EXACT_NUMBERS_CONFIG if mode == EXACT else {}))
    result = run_target(config, fixture_input(name, tmp_path))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert any(all(re.search(part, line) for part in FAILS[name, mode]) for line in errors), errors
    assert result.states == states_before_data(name)  # none after the first record
    for table in bq_client.list_tables(bq_dataset):
        assert bq_client.get_table(table).num_rows == 0, f"{table.table_id} has rows"


def test_every_recording_has_a_case() -> None:
    assert set(MANIFEST["fixtures"]) == {name for name, _, _ in LOADS} | {n for n, _ in FAILS}
