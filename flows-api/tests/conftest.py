from __future__ import annotations

from pathlib import Path

import pytest

from flows_api.db import Row, connect_writable, create_index, insert_rows
from flows_api.generate import generate_rows

BLOCK_TIME = 500
BLOCK_SIZE = 5_000


def _rows_with_block() -> list[Row]:
    """3,000 generated rows, then 5,000 rows sharing one time, then 3,000 more."""
    head = list(generate_rows(3_000, start_time=1, seed=7))
    block = [
        (3_001 + i, BLOCK_TIME, i % 7, f"C{i % 50}", "N1", "C1", "443", 6, i + 1, (i + 1) * 60)
        for i in range(BLOCK_SIZE)
    ]
    tail = list(
        generate_rows(3_000, start_time=BLOCK_TIME + 1, start_id=3_001 + BLOCK_SIZE, seed=7)
    )
    return head + block + tail


@pytest.fixture(scope="session")
def source_rows() -> list[Row]:
    rows = _rows_with_block()
    assert max(r[1] for r in rows[:3_000]) < BLOCK_TIME
    return rows


@pytest.fixture(scope="session")
def flows_db(tmp_path_factory: pytest.TempPathFactory, source_rows: list[Row]) -> Path:
    path = tmp_path_factory.mktemp("flows") / "flows.db"
    conn = connect_writable(path)
    insert_rows(conn, source_rows)
    create_index(conn)
    conn.close()
    return path
