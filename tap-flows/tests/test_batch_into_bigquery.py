"""The BATCH fast path through the real target into the BigQuery emulator.

RECORD mode and BATCH mode (plain and gzip files) each load the same source into their
own table through `tap-flows | target-bigquery-lite`; all tables must equal the source
row for row, and the states the target passes on must never point past what it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dev_services.process import Service
from google.cloud import bigquery

from .conftest import db_rows
from .tap_process import TAP, write_json
from .test_batch import file_rows

TARGET = Path(sys.executable).parent / "target-bigquery-lite"


def pipe(
    workdir: Path, tap_settings: dict[str, Any], target_settings: dict[str, Any]
) -> list[dict]:
    """`tap-flows | target-bigquery-lite`; returns the states the target printed."""
    workdir.mkdir(parents=True)
    tap_config = write_json(workdir / "tap.json", tap_settings)
    target_config = write_json(workdir / "target.json", target_settings)
    with open(workdir / "tap.log", "wb") as tap_log, open(workdir / "target.log", "wb") as log:
        tap = subprocess.Popen(
            [str(TAP), "--config", str(tap_config)], stdout=subprocess.PIPE, stderr=tap_log
        )
        target = subprocess.run(
            [str(TARGET), "--config", str(target_config)],
            stdin=tap.stdout,
            stdout=subprocess.PIPE,
            stderr=log,
            timeout=300,
        )
        assert tap.stdout is not None
        tap.stdout.close()
        assert tap.wait(timeout=60) == 0, (workdir / "tap.log").read_text()
    assert target.returncode == 0, (workdir / "target.log").read_text()
    return [json.loads(line) for line in target.stdout.splitlines()]


def table_rows(client: bigquery.Client, table: str) -> list[dict[str, Any]]:
    return [dict(row) for row in client.query(f"SELECT * FROM `{table}` ORDER BY time, id")]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_batch_mode_loads_the_same_rows_as_record_mode(
    tmp_path: Path,
    flows_api_url: str,
    flows_db: Path,
    bigquery_emulator: Service,
    bq_client: bigquery.Client,
    bq_dataset: str,
    compression: str,
) -> None:
    source = db_rows(flows_db)
    target = {
        "project": "flows-local",
        "dataset": bq_dataset,
        "api_endpoint": bigquery_emulator.url,
        "staging_dir": str(tmp_path / "staging"),
        "batch_max_rows": 8_000,  # several target batches: states are released as they commit
        "batch_roots": [str(tmp_path)],
    }
    tap = {"api_url": flows_api_url, "page_size": 3_000}
    batches = tmp_path / "batches"
    batches.mkdir()
    batch_config = {
        "encoding": {"format": "jsonl", "compression": compression},
        "storage": {"root": batches.as_uri()},
        "batch_size": 5_000,
    }

    record_states = pipe(tmp_path / "records", tap, {**target, "table_prefix": "records_"})
    batch_states = pipe(
        tmp_path / "batch",
        {**tap, "batch_config": batch_config},
        {**target, "table_prefix": "batch_"},
    )

    in_records = table_rows(bq_client, f"{bq_dataset}.records_flows")
    in_batches = table_rows(bq_client, f"{bq_dataset}.batch_flows")
    assert in_batches == in_records == source
    newest = source[-1]["time"]
    for states in (record_states, batch_states):
        bookmarks = [s["bookmarks"]["flows"]["replication_key_value"] for s in states]
        assert len(bookmarks) >= 2
        assert bookmarks == sorted(bookmarks)
        assert bookmarks[-1] == newest
    # Each state the target passed on in BATCH mode is one the tap wrote after a whole
    # file: the time of that file's last row.
    file_ends = {file_rows(path)[-1]["time"] for path in batches.iterdir()}
    assert {s["bookmarks"]["flows"]["replication_key_value"] for s in batch_states} <= file_ends
