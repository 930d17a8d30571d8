"""flows-api under concurrent load: 16 streaming readers and a burst of small requests."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.reliability.api_load import run_load

ROWS = 60_000


def test_sixteen_streaming_readers_and_a_burst_lose_nothing(
    tmp_path: Path, start_flows_api_service
) -> None:
    db = tmp_path / "flows.db"
    flows_api = Path(sys.executable).parent / "flows-api"
    subprocess.run([str(flows_api), "generate", "--rows", str(ROWS), "--db", str(db)], check=True)
    max_time = sqlite3.connect(db).execute("SELECT max(time) FROM flows").fetchone()[0]
    service = start_flows_api_service(db)

    result = asyncio.run(
        run_load(service.url, ROWS, readers=16, burst=400, page=7_000, max_time=max_time)
    )

    assert result.errors == []
    assert result.rows_per_reader == [ROWS] * 16
    assert len(result.burst_latencies_ms) == 400
    summary = result.summary()
    print(summary)
    assert summary["latency_p99_ms"] < 10_000
