"""Fixtures: run the target as a real subprocess against the session's BigQuery emulator.

The emulator, the real client (`bq_client`) and a fresh dataset per test (`bq_dataset`) come
from the dev-services pytest plugin; a missing emulator fails the test, it is never skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery

DATA = Path(__file__).parent / "data"
TARGET = [sys.executable, "-m", "target_bigquery_lite"]
TIMEOUT = 120


@dataclass
class Result:
    """A finished target run."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def states(self) -> list[Any]:
        """The STATE values the target printed, in order."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def target_env() -> dict[str, str]:
    """The environment for target subprocesses (no emulator variable leaking in)."""
    env = dict(os.environ)
    env.pop("BIGQUERY_EMULATOR_HOST", None)
    return env


def write_config(path: Path, **settings: Any) -> Path:
    """Write a target config file."""
    path.write_text(json.dumps(settings))
    return path


@pytest.fixture
def target_config(tmp_path: Path, bigquery_emulator: Any, bq_dataset: str) -> Callable[..., Path]:
    """`make(**overrides)` -> a config file for the emulator and the test's dataset."""

    def make(**overrides: Any) -> Path:
        settings = {
            "project": "flows-local",
            "dataset": bq_dataset,
            "api_endpoint": bigquery_emulator.url,
            "staging_dir": str(tmp_path / "staging"),
            "batch_roots": [str(tmp_path)],
            "max_retries": 1,
            **overrides,
        }
        return write_config(tmp_path / "target.json", **settings)

    return make


def run_target(config: Path, input_data: Path | bytes, *extra: str) -> Result:
    """Run the target to completion on a file (`--input`) or bytes (stdin)."""
    args = [*TARGET, "--config", str(config), *extra]
    if isinstance(input_data, Path):
        args += ["--input", str(input_data)]
        stdin = None
    else:
        stdin = input_data
    proc = subprocess.run(args, input=stdin, capture_output=True, timeout=TIMEOUT, env=target_env())
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def query(client: bigquery.Client, sql: str) -> list[dict[str, Any]]:
    """Rows of a query as dicts."""
    return [dict(row.items()) for row in client.query(sql).result()]


def table_rows(
    client: bigquery.Client, dataset: str, table: str, order_by: str = "id"
) -> list[dict[str, Any]]:
    """All rows of a table, ordered."""
    return query(
        client, f"SELECT * FROM `{client.project}.{dataset}.{table}` ORDER BY `{order_by}`"
    )


def singer_lines(*messages: dict[str, Any]) -> bytes:
    """Singer messages as input bytes."""
    return b"".join(json.dumps(message).encode() + b"\n" for message in messages)


@pytest.fixture
def rows(bq_client: bigquery.Client, bq_dataset: str) -> Callable[..., list[dict[str, Any]]]:
    """`rows(table, order_by="id")` -> the table's rows in the test's dataset."""

    def get(table: str, order_by: str = "id") -> list[dict[str, Any]]:
        return table_rows(bq_client, bq_dataset, table, order_by)

    return get


@pytest.fixture
def tables(bq_client: bigquery.Client, bq_dataset: str) -> Callable[[], list[str]]:
    """`tables()` -> the names of the tables in the test's dataset."""

    def names() -> list[str]:
        return sorted(table.table_id for table in bq_client.list_tables(bq_dataset))

    return names


@pytest.fixture
def data_file() -> Callable[[str], Path]:
    """`data_file(name)` -> tests/data/<name>.singer (failing clearly if it does not exist)."""

    def get(name: str) -> Path:
        path = DATA / f"{name}.singer"
        assert path.is_file(), path
        return path

    return get
