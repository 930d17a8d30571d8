from __future__ import annotations

from pathlib import Path

import pytest
from dev_services.flows_data import BLOCK_SIZE, BLOCK_TIME, rows_with_block, write_db

from flows_api.db import Row

__all__ = ["BLOCK_SIZE", "BLOCK_TIME"]


@pytest.fixture(scope="session")
def source_rows() -> list[Row]:
    return rows_with_block()


@pytest.fixture(scope="session")
def flows_db(tmp_path_factory: pytest.TempPathFactory, source_rows: list[Row]) -> Path:
    return write_db(tmp_path_factory.mktemp("flows") / "flows.db", source_rows)
