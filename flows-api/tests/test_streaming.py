"""A 1M-row response is streamed: the server's memory stays flat while a client reads it all."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil
import pytest
import requests

from .test_import import flows_api

ROWS = 1_000_000
RSS_BOUND_MB = 150


@pytest.fixture(scope="module")
def million_row_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("big") / "flows.db"
    result = flows_api("generate", "--rows", str(ROWS), "--db", str(db), "--seed", "11")
    assert result.returncode == 0, result.stderr
    return db


def _tree_rss_max(pid: int, stop: threading.Event, peak: list[int]) -> None:
    root = psutil.Process(pid)
    while not stop.wait(0.05):
        try:
            procs = [root, *root.children(recursive=True)]
            peak[0] = max(peak[0], *(p.memory_info().rss for p in procs))
        except psutil.NoSuchProcess:
            return


def test_million_row_response_is_streamed_with_flat_memory(
    start_flows_api_service, million_row_db: Path
) -> None:
    service = start_flows_api_service(million_row_db, workers=1, threads=2)
    peak = [0]
    stop = threading.Event()
    sampler = threading.Thread(target=_tree_rss_max, args=(service.pid, stop, peak))
    sampler.start()
    lines = 0
    last_id = 0
    try:
        with requests.get(
            f"{service.url}/api/v1/stream/flows.json",
            params={"limit": ROWS},
            stream=True,
            timeout=60,
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines(chunk_size=1 << 16):
                lines += 1
                last_id = line[6 : line.index(b",")]
    finally:
        stop.set()
        sampler.join()
    assert lines == ROWS
    assert int(last_id) == ROWS
    peak_mb = peak[0] / 2**20
    print(f"flows-api peak RSS (largest process) while streaming {ROWS:,} rows: {peak_mb:.0f} MB")
    assert 0 < peak_mb < RSS_BOUND_MB
