"""tap-flows | target-bigquery-lite through a real pipe, with RECORD and with BATCH messages."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery

from tests.conftest import TARGET, Result, query, target_env, write_config

BIN = Path(sys.executable).parent
ROWS = 3_000


@pytest.fixture
def flows_api(tmp_path: Path, start_flows_api_service: Callable[..., Any]) -> str:
    db = tmp_path / "flows.db"
    subprocess.run(
        [str(BIN / "flows-api"), "generate", "--rows", str(ROWS), "--db", str(db)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return start_flows_api_service(db).url


def pipe(tap_config: Path, target_config: Path) -> Result:
    """Run `tap-flows | target-bigquery-lite` with an OS pipe between them."""
    tap = subprocess.Popen(
        [str(BIN / "tap-flows"), "--config", str(tap_config)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=target_env(),
    )  # fmt: skip
    target = subprocess.run(
        [*TARGET, "--config", str(target_config)],
        stdin=tap.stdout, capture_output=True, env=target_env(), timeout=300,
    )  # fmt: skip
    assert tap.stdout is not None
    tap.stdout.close()
    assert tap.wait(timeout=60) == 0
    return Result(target.returncode, target.stdout.decode(), target.stderr.decode())


@pytest.mark.parametrize("batch", [False, True], ids=["records", "batch"])
def test_tap_flows_into_bigquery(
    batch: bool,
    flows_api: str,
    tmp_path: Path,
    target_config: Callable[..., Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    settings: dict[str, Any] = {"api_url": flows_api}
    if batch:
        settings["batch_config"] = {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": (tmp_path / "batches").as_uri(), "prefix": "flows-"},
            "batch_size": 1_000,
        }
    result = pipe(write_config(tmp_path / "tap.json", **settings), target_config())
    assert result.returncode == 0, result.stderr
    table = f"`flows-local.{bq_dataset}.flows`"
    got = query(
        bq_client, f"SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS d, MAX(id) AS m FROM {table}"
    )
    assert got == [{"n": ROWS, "d": ROWS, "m": ROWS}]
    last = result.states[-1]["bookmarks"]["flows"]
    assert last["replication_key"] == "time"
    newest = query(bq_client, f"SELECT MAX(time) AS t FROM {table}")[0]["t"]
    assert last["replication_key_value"] == newest
