"""The SQLite flows table: its schema, connections and bulk inserts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

COLUMNS: tuple[str, ...] = (
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

Row = tuple[int, int, int, str, str, str, str, int, int, int]

_DDL = """
CREATE TABLE IF NOT EXISTS flows (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    src_comp TEXT NOT NULL,
    src_port TEXT NOT NULL,
    dst_comp TEXT NOT NULL,
    dst_port TEXT NOT NULL,
    protocol INTEGER NOT NULL,
    packet_count INTEGER NOT NULL,
    byte_count INTEGER NOT NULL
);
"""
_INDEX = "CREATE INDEX IF NOT EXISTS flows_time_id ON flows (time, id);"
_INSERT = f"INSERT INTO flows ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


class DatabaseError(Exception):
    """The database is missing, unreadable or not a flows database."""


def connect_writable(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) a flows database for bulk writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(_DDL)
    return conn


def connect_readonly(path: Path) -> sqlite3.Connection:
    """Open an existing flows database read-only, so the API can never modify it."""
    if not path.is_file():
        raise DatabaseError(f"database not found: {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("SELECT 1 FROM flows LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DatabaseError(f"{path} is not a flows database: {exc}") from exc
    return conn


def create_index(conn: sqlite3.Connection) -> None:
    """Create the (time, id) index the API's keyset pagination relies on.

    Built after bulk loads: inserting into an indexed table is several times slower.
    """
    conn.execute(_INDEX)
    conn.commit()


def insert_rows(conn: sqlite3.Connection, rows: Iterable[Row], chunk_size: int = 50_000) -> int:
    """Insert rows in chunked transactions; returns how many were inserted."""
    total = 0
    iterator: Iterator[Row] = iter(rows)
    while chunk := list(islice(iterator, chunk_size)):
        with conn:
            conn.executemany(_INSERT, chunk)
        total += len(chunk)
    return total


def row_count(conn: sqlite3.Connection) -> int:
    """Number of rows in the flows table."""
    return conn.execute("SELECT count(*) FROM flows").fetchone()[0]


def last_position(conn: sqlite3.Connection) -> tuple[int, int] | None:
    """The largest (time, id) in the table, or None when it is empty."""
    row = conn.execute("SELECT max(time), max(id) FROM flows").fetchone()
    return None if row[0] is None else (row[0], row[1])
