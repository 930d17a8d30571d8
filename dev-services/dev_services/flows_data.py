"""Flows databases for tests and tools to serve, made the ways users make them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from flows_api.db import Row, connect_writable, create_index, insert_rows
from flows_api.generate import generate_rows

BIN = Path(sys.executable).parent
BLOCK_TIME = 500
BLOCK_SIZE = 5_000


def generate_db(path: Path, rows: int, seed: int = 1) -> Path:
    """A database from `flows-api generate`, the command users run."""
    command = [str(BIN / "flows-api"), "generate", "--rows", str(rows), "--db", str(path)]
    subprocess.run([*command, "--seed", str(seed)], check=True, capture_output=True)
    return path


def rows_with_block() -> list[Row]:
    """3,000 generated rows, then 5,000 rows sharing one `time`, then 3,000 more.

    The block is larger than a page, so paging must continue inside one second: the
    case a keyset on `time` alone, or an exclusive bookmark, gets wrong.
    """
    head = list(generate_rows(3_000, start_time=1, seed=7))
    block = [
        (3_001 + i, BLOCK_TIME, i % 7, f"C{i % 50}", "N1", "C1", "443", 6, i + 1, (i + 1) * 60)
        for i in range(BLOCK_SIZE)
    ]
    tail = list(
        generate_rows(3_000, start_time=BLOCK_TIME + 1, start_id=3_001 + BLOCK_SIZE, seed=7)
    )
    assert max(row[1] for row in head) < BLOCK_TIME
    return head + block + tail


def write_db(path: Path, rows: list[Row]) -> Path:
    """A database holding exactly `rows`, indexed as flows-api serves it."""
    conn = connect_writable(path)
    try:
        insert_rows(conn, rows)
        create_index(conn)
    finally:
        conn.close()
    return path
