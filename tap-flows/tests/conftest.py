"""Shared fixtures: generated flows databases and real flows-api processes serving them.

Session-scoped services serve databases that no test modifies; tests that append rows
start their own.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dev_services.flows_api import start_flows_api
from dev_services.flows_data import BLOCK_SIZE, BLOCK_TIME, generate_db, rows_with_block, write_db
from flows_api.db import COLUMNS

BIN = Path(sys.executable).parent
__all__ = ["BLOCK_SIZE", "BLOCK_TIME", "generate_db"]
ROWS = 20_000


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


@pytest.fixture(scope="session")
def flows_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_db(tmp_path_factory.mktemp("flows") / "flows.db", ROWS, seed=3)


@pytest.fixture(scope="session")
def flows_api_url(tmp_path_factory: pytest.TempPathFactory, flows_db: Path) -> Iterator[str]:
    """flows-api (gunicorn) serving `flows_db`, without a key."""
    service = start_flows_api(flows_db, tmp_path_factory.mktemp("api") / "api.log")
    yield service.url
    service.stop()


@pytest.fixture(scope="session")
def block_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_db(tmp_path_factory.mktemp("block") / "block.db", rows_with_block())


@pytest.fixture(scope="session")
def block_api_url(tmp_path_factory: pytest.TempPathFactory, block_db: Path) -> Iterator[str]:
    """flows-api serving `block_db`: 5,000 rows share time 500."""
    service = start_flows_api(block_db, tmp_path_factory.mktemp("block-api") / "api.log")
    yield service.url
    service.stop()
