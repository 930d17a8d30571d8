"""`target-bigquery-lite compact`: a dedup_view raw table cut to its view's rows, atomically."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.cloud import bigquery

from tests.conftest import TARGET, TIMEOUT, Result, query, run_target, target_env

Rows = Callable[..., list[dict[str, Any]]]
DEDUP = {"load_method": "dedup_view"}


def run_compact(config: Path, stream: str) -> Result:
    proc = subprocess.run(
        [*TARGET, "compact", "--config", str(config), "--stream", stream],
        capture_output=True, timeout=TIMEOUT, env=target_env(), check=False,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_compaction_keeps_the_views_rows_and_one_raw_row_per_key(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    rows: Rows,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    config = target_config(batch_max_rows=2, **DEDUP)
    for name in ("upsert_across_batches", "upsert_same_key_twice"):
        assert run_target(config, data_file(name)).returncode == 0
    view_before = rows("flows")
    assert len(rows("flows_raw")) == 13

    result = run_compact(config, "flows")

    assert result.returncode == 0, result.stderr
    assert "removed 9 rows, 4 left" in result.stdout
    assert rows("flows") == view_before  # every column, _bqlite_seq included
    raw = rows("flows_raw")
    assert raw == view_before  # one row per key: the one the view shows
    table = bq_client.get_table(f"flows-local.{bq_dataset}.flows_raw")
    assert table.clustering_fields == ["id"]
    assert "bqlite_stream" in table.labels  # a DELETE keeps what the table was made with
    # loading goes on as before, and a second compaction has nothing left to remove
    assert run_target(config, data_file("upsert_same_key_twice")).returncode == 0
    assert [(r["id"], r["byte_count"]) for r in rows("flows")] == [
        (1, 1000), (2, 200), (3, 3), (4, 4),
    ]  # fmt: skip
    again = run_compact(config, "flows")
    assert again.returncode == 0, again.stderr
    assert "removed 6 rows, 4 left" in again.stdout
    raw_table = f"`flows-local.{bq_dataset}.flows_raw`"
    counts = query(bq_client, f"SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM {raw_table}")
    assert counts == [{"n": 4, "ids": 4}]


def test_compaction_is_refused_while_a_run_holds_its_staging_folder(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    config = target_config(batch_max_rows=2, batch_max_seconds=3600, **DEDUP)
    assert run_target(config, data_file("upsert_across_batches")).returncode == 0
    lines = data_file("upsert_same_key_twice").read_bytes().splitlines(keepends=True)
    pipe = subprocess.PIPE
    running = subprocess.Popen(
        [*TARGET, "--config", str(config)], stdin=pipe, stdout=pipe, stderr=pipe, env=target_env()
    )
    assert running.stdin is not None
    try:
        running.stdin.write(b"".join(lines[:2]))  # the SCHEMA and one record: staged, not loaded
        running.stdin.flush()
        staging = config.parent / "staging"
        deadline = time.monotonic() + 60
        while not list(staging.glob("run-*/*.ndjson")) and time.monotonic() < deadline:
            time.sleep(0.1)

        refused = run_compact(config, "flows")

        assert refused.returncode == 2
        assert "compact: a run of the target is in progress (it holds " in refused.stderr
        assert "Traceback" not in refused.stderr
        assert len(rows("flows_raw")) == 7  # nothing deleted
        running.stdin.write(b"".join(lines[2:]))
    finally:
        _, err = running.communicate(timeout=TIMEOUT)
    assert running.returncode == 0, err.decode()
    after = run_compact(config, "flows")  # the run ended: its lock is gone
    assert after.returncode == 0, after.stderr


def test_compaction_refuses_streams_it_cannot_compact_in_one_line(
    target_config: Callable[..., Path], data_file: Callable[[str], Path]
) -> None:
    dedup = target_config(**DEDUP)
    assert run_target(dedup, data_file("append_events")).returncode == 0
    assert run_target(target_config(), data_file("upsert_same_key_twice")).returncode == 0
    cases = {
        "events": "compact: stream 'events' has no key properties, so its view shows every row",
        "flows": "compact: stream 'flows' has no view flows over a table flows_raw",
        "missing": "compact: stream 'missing' has no view missing over a table missing_raw",
    }
    for stream, message in cases.items():
        result = run_compact(dedup, stream)
        assert result.returncode == 1, (stream, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
