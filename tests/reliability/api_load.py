"""A bounded load test of flows-api: concurrent streaming readers plus a burst of small requests.

Every streaming reader walks the whole table with keyset pages and checks it saw each
id exactly once, in order; the burst measures request latency. Used by the test suite
(small) and by `make reliability` (larger), which records the figures in docs/RELIABILITY.md.

    python tests/reliability/api_load.py --url http://127.0.0.1:5055 --rows 1000000 \
        --max-time 50000 --readers 16 --burst 2000
    python -m tests.reliability.api_load --generate 1000000   # its own database and flows-api
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PATH = "/api/v1/stream/flows.json"


@dataclass
class LoadResult:
    """What the load test saw; `errors` must be empty for a pass."""

    readers: int
    rows_per_reader: list[int] = field(default_factory=list)
    stream_seconds: float = 0.0
    burst_latencies_ms: list[float] = field(default_factory=list)
    burst_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        """Latency percentile of the burst requests, in ms."""
        ordered = sorted(self.burst_latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def summary(self) -> dict[str, float | int]:
        """Figures for the report."""
        total_rows = sum(self.rows_per_reader)
        return {
            "readers": self.readers,
            "rows_per_reader": min(self.rows_per_reader, default=0),
            "stream_rows_per_s": round(total_rows / self.stream_seconds)
            if self.stream_seconds
            else 0,
            "burst_requests": len(self.burst_latencies_ms),
            "burst_requests_per_s": round(len(self.burst_latencies_ms) / self.burst_seconds)
            if self.burst_seconds
            else 0,
            "latency_p50_ms": round(self.percentile(0.50), 1),
            "latency_p95_ms": round(self.percentile(0.95), 1),
            "latency_p99_ms": round(self.percentile(0.99), 1),
            "latency_mean_ms": round(statistics.fmean(self.burst_latencies_ms), 1)
            if self.burst_latencies_ms
            else 0,
            "errors": len(self.errors),
        }


async def _read_all(
    client: httpx.AsyncClient, expected: int, page: int, result: LoadResult
) -> None:
    params: dict[str, int] = {"limit": page}
    seen = 0
    last = (-1, 0)
    while True:
        count = 0
        async with client.stream("GET", PATH, params=params) as response:
            if response.status_code != 200:
                result.errors.append(f"reader got HTTP {response.status_code}")
                return
            async for line in response.aiter_lines():
                row = json.loads(line)
                key = (row["time"], row["id"])
                if key <= last:
                    result.errors.append(f"out of order or repeated row {key} after {last}")
                    return
                last = key
                count += 1
        seen += count
        if count < page:
            break
        params = {"since": last[0], "after_id": last[1], "limit": page}
    if seen != expected:
        result.errors.append(f"reader saw {seen} rows, expected {expected}")
    result.rows_per_reader.append(seen)


async def _small_request(client: httpx.AsyncClient, since: int, result: LoadResult) -> None:
    started = time.perf_counter()
    response = await client.get(PATH, params={"since": since, "limit": 10})
    result.burst_latencies_ms.append((time.perf_counter() - started) * 1000)
    if response.status_code != 200 or len(response.text.splitlines()) > 10:
        result.errors.append(f"small request since={since}: HTTP {response.status_code}")


async def run_load(
    url: str,
    expected_rows: int,
    readers: int,
    burst: int,
    page: int,
    max_time: int,
    api_key: str | None = None,
) -> LoadResult:
    """Run `readers` full-table streaming readers and, meanwhile, `burst` small requests."""
    result = LoadResult(readers=readers)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=readers + 32)
    timeout = httpx.Timeout(300.0)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=timeout
    ) as client:
        started = time.perf_counter()
        streams = [
            asyncio.create_task(_read_all(client, expected_rows, page, result))
            for _ in range(readers)
        ]
        burst_started = time.perf_counter()
        semaphore = asyncio.Semaphore(32)

        async def limited(i: int) -> None:
            async with semaphore:
                await _small_request(client, (i * 7919) % max(max_time, 1), result)

        await asyncio.gather(*(limited(i) for i in range(burst)))
        result.burst_seconds = time.perf_counter() - burst_started
        await asyncio.gather(*streams)
        result.stream_seconds = time.perf_counter() - started
    return result


def main() -> int:
    """Run the load test and print the figures as JSON (exit 1 on any error).

    With `--url`, against a running flows-api (`--rows` and `--max-time` describe its
    database); with `--generate N`, against a flows-api this starts over N generated rows.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running flows-api")
    parser.add_argument("--rows", type=int, help="rows the database holds (with --url)")
    parser.add_argument("--max-time", type=int, help="max(time) in the database (with --url)")
    parser.add_argument("--generate", type=int, help="serve this many generated rows instead")
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--page", type=int, default=100_000)
    args = parser.parse_args()
    if args.generate:
        summary, errors = _against_generated(args.generate, args.readers, args.burst, args.page)
    elif args.url and args.rows and args.max_time is not None:
        result = asyncio.run(
            run_load(args.url, args.rows, args.readers, args.burst, args.page, args.max_time)
        )
        summary, errors = {"rows": args.rows, **result.summary()}, result.errors
    else:
        parser.error("give --generate N, or --url with --rows and --max-time")
    print(json.dumps(summary))
    for error in errors[:10]:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


def _against_generated(
    rows: int, readers: int, burst: int, page: int
) -> tuple[dict[str, float | int], list[str]]:
    """Generate `rows` rows, serve them with flows-api's defaults, run the load, stop."""
    from dev_services.flows_api import start_flows_api

    with tempfile.TemporaryDirectory(prefix="api-load-") as folder:
        db = Path(folder) / "flows.db"
        flows_api = Path(sys.executable).parent / "flows-api"
        subprocess.run(
            [str(flows_api), "generate", "--rows", str(rows), "--db", str(db)],
            check=True,
            capture_output=True,
        )
        with closing(sqlite3.connect(db)) as conn:
            max_time = conn.execute("SELECT max(time) FROM flows").fetchone()[0]
        service = start_flows_api(db, Path(folder) / "flows-api.log")
        try:
            result = asyncio.run(run_load(service.url, rows, readers, burst, page, max_time))
        finally:
            service.stop()
    return {"rows": rows, "page": page, **result.summary()}, result.errors


if __name__ == "__main__":
    sys.exit(main())
