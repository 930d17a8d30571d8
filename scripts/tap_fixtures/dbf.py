"""A Visual FoxPro DBF file of flows-api's generated rows plus typed extras, for tap-dbf.

flows-api serves NDJSON, which tap-rest-api-msdk cannot read (it parses each response as one
JSON document), so the second SDK tap is tap-dbf, reading the same generated flows from a DBF
file written here. The writer covers the field types tap-dbf maps: C, N, L, D, I, B, Y, T.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import struct
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

JULIAN_OFFSET = 1721425  # Julian day number of the proleptic Gregorian ordinal 0
FLOWS_COLUMNS = (
    "id",
    "time",
    "duration",
    "src_comp",
    "src_port",
    "dst_comp",
    "dst_port",
    "protocol",
    "packet_count",
    "byte_count",
)


@dataclass(frozen=True)
class Field:
    """A DBF field: name (at most 10 ASCII characters), type letter, width, decimals."""

    name: str
    kind: str
    length: int
    decimals: int = 0


FIELDS = (
    Field("ID", "I", 4),
    Field("TIME", "N", 12),
    Field("DURATION", "N", 10),
    Field("SRC_COMP", "C", 16),
    Field("SRC_PORT", "C", 16),
    Field("DST_COMP", "C", 16),
    Field("DST_PORT", "C", 16),
    Field("PROTOCOL", "N", 3),
    Field("PACKETS", "N", 20),
    Field("BYTES", "N", 20),
    Field("AMOUNT", "N", 20, 4),
    Field("PRICE", "Y", 8),
    Field("RATIO", "B", 8),
    Field("SEEN", "D", 8),
    Field("ACTIVE", "L", 1),
    Field("NOTE", "C", 40),
    Field("STAMP", "T", 8),
)
NOTES = ("café", "naïve façade", 'O\'Neil "quoted"', "back\\slash", "", "£ € ©")


def flows_rows(flows_api: Path, rows: int, work: Path) -> list[dict[str, Any]]:
    """Generate `rows` flows with flows-api's generator (seed 1) and read them back."""
    db = work / "flows.db"
    subprocess.run(
        [str(flows_api), "generate", "--rows", str(rows), "--db", str(db), "--seed", "1"],
        check=True,
        capture_output=True,
    )
    with sqlite3.connect(db) as conn:
        result = conn.execute(f"SELECT {', '.join(FLOWS_COLUMNS)} FROM flows ORDER BY id")
        return [dict(zip(FLOWS_COLUMNS, row, strict=True)) for row in result]


def dbf_values(flow: dict[str, Any]) -> dict[str, Any]:
    """The DBF row for a flow: its columns plus extras; every 10th row has blank extras."""
    i = flow["id"]
    blank = i % 10 == 0
    return {
        "ID": i,
        "TIME": flow["time"],
        "DURATION": flow["duration"],
        "SRC_COMP": flow["src_comp"],
        "SRC_PORT": flow["src_port"],
        "DST_COMP": flow["dst_comp"],
        "DST_PORT": flow["dst_port"],
        "PROTOCOL": flow["protocol"],
        "PACKETS": flow["packet_count"],
        "BYTES": flow["byte_count"],
        "AMOUNT": None if blank else Decimal(i * 123456789012345) / 10000 * (-1) ** i,
        "PRICE": Decimal(i * 1000000000007) / 10000 if not blank else Decimal(0),
        "RATIO": i / 7,
        "SEEN": None if blank else dt.date(2000, 1, 1) + dt.timedelta(days=i * 37),
        "ACTIVE": None if blank else i % 3 == 0,
        "NOTE": NOTES[i % len(NOTES)],
        "STAMP": None if blank else dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i * 3671),
    }


def _encode_datetime(field: Field, value: dt.datetime | None) -> bytes:
    """T: Julian day and milliseconds since midnight, two little-endian 32-bit integers."""
    if value is None:
        return b"\0" * 8
    midnight = dt.datetime.combine(value.date(), dt.time())
    millis = int((value - midnight).total_seconds() * 1000)
    return struct.pack("<LL", value.date().toordinal() + JULIAN_OFFSET, millis)


_ENCODERS: dict[str, Callable[[Field, Any], bytes]] = {
    "C": lambda f, v: (v or "").encode("cp1252").ljust(f.length, b" "),
    "N": lambda f, v: ("" if v is None else f"{v:.{f.decimals}f}").rjust(f.length).encode(),
    "L": lambda f, v: b"?" if v is None else (b"T" if v else b"F"),
    "D": lambda f, v: b" " * 8 if v is None else v.strftime("%Y%m%d").encode(),
    "I": lambda f, v: struct.pack("<i", v),
    "B": lambda f, v: struct.pack("<d", v),
    "Y": lambda f, v: struct.pack("<q", int(v * 10000)),
    "T": _encode_datetime,
}


def write_dbf(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write a Visual FoxPro (0x30) table, code page 1252, without memo fields."""
    header_length = 32 + 32 * len(FIELDS) + 1 + 263
    record_length = 1 + sum(f.length for f in FIELDS)
    out = bytearray(
        struct.pack("<B3BLHH", 0x30, 124, 1, 1, len(rows), header_length, record_length)
    )
    out += b"\0" * 17 + b"\x03" + b"\0" * 2  # reserved, table flags, code page mark 0x03 (1252)
    offset = 1
    for field in FIELDS:
        out += field.name.encode("ascii").ljust(11, b"\0") + field.kind.encode("ascii")
        out += struct.pack("<LBB", offset, field.length, field.decimals) + b"\0" * 14
        offset += field.length
    out += b"\r" + b"\0" * 263
    for row in rows:
        out += b" " + b"".join(_ENCODERS[field.kind](field, row[field.name]) for field in FIELDS)
    out += b"\x1a"
    path.write_bytes(bytes(out))


def _text(field: Field, value: Any) -> str | None:
    """The exact text of a value as the DBF file holds it (what a reader should return)."""
    if value is None:
        return None
    if field.kind == "N" and field.decimals:
        return f"{value:.{field.decimals}f}"
    if field.kind == "Y":
        return f"{value:.4f}"
    if field.kind == "L":
        return "true" if value else "false"
    if field.kind in ("D", "T"):
        return value.isoformat()
    return repr(value) if field.kind == "B" else str(value)


def dbf_contents(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The expected-values document for the DBF file, in the same shape as Postgres' one."""
    dbf_types = {
        "C": "character",
        "N": "numeric",
        "L": "logical",
        "D": "date",
        "I": "integer",
        "B": "double",
        "Y": "currency",
        "T": "datetime",
    }
    columns = [
        {"name": f.name, "type": f"{dbf_types[f.kind]}({f.length},{f.decimals})", "form": "text"}
        for f in FIELDS
    ]
    sums = {
        name: str(sum(row[name] for row in rows if row[name] is not None))
        for name in ("AMOUNT", "PRICE")
    }
    return {
        "table": "flows.dbf",
        "where": None,
        "key": ["ID"],
        "columns": columns,
        "rows": [{f.name: _text(f, row[f.name]) for f in FIELDS} for row in rows],
        "sums": sums,
    }
