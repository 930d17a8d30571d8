"""Shared fixtures: generated flows databases and real flows-api processes serving them.

Session-scoped services serve databases that no test modifies; tests that append rows
start their own.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dev_services.flows_api import start_flows_api
from flows_api.db import COLUMNS, Row, connect_writable, create_index, insert_rows
from flows_api.generate import generate_rows

BIN = Path(sys.executable).parent
ROWS = 20_000
BLOCK_TIME = 500
BLOCK_SIZE = 5_000


def generate_db(path: Path, rows: int, seed: int = 3) -> Path:
    """A database from `flows-api generate`, as users make them."""
    subprocess.run(
        [
            str(BIN / "flows-api"),
            "generate",
            "--rows",
            str(rows),
            "--db",
            str(path),
            "--seed",
            str(seed),
        ],
        check=True,
        capture_output=True,
    )
    return path


def db_rows(path: Path, where: str = "1 = 1", params: tuple = ()) -> list[dict]:
    """The database's rows as the API sends them, in (time, id) order."""
    conn = sqlite3.connect(path)
    try:
        cursor = conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM flows WHERE {where} ORDER BY time, id", params
        )
        return [dict(zip(COLUMNS, row, strict=True)) for row in cursor]
    finally:
        conn.close()


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
    assert max(row[1] for row in head) < BLOCK_TIME
    return head + block + tail


@pytest.fixture(scope="session")
def flows_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_db(tmp_path_factory.mktemp("flows") / "flows.db", ROWS)


@pytest.fixture(scope="session")
def flows_api_url(tmp_path_factory: pytest.TempPathFactory, flows_db: Path) -> Iterator[str]:
    """flows-api (gunicorn) serving `flows_db`, without a key."""
    service = start_flows_api(flows_db, tmp_path_factory.mktemp("api") / "api.log")
    yield service.url
    service.stop()


@pytest.fixture(scope="session")
def block_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("block") / "block.db"
    conn = connect_writable(path)
    insert_rows(conn, _rows_with_block())
    create_index(conn)
    conn.close()
    return path


@pytest.fixture(scope="session")
def block_api_url(tmp_path_factory: pytest.TempPathFactory, block_db: Path) -> Iterator[str]:
    """flows-api serving `block_db`: 5,000 rows share time 500."""
    service = start_flows_api(block_db, tmp_path_factory.mktemp("block-api") / "api.log")
    yield service.url
    service.stop()
