"""Partitioned parallel backfill: N `tap-flows | target-bigquery-lite` pipes over time ranges.

    scripts/backfill.py --partitions 4 --tap-config tap.json --target-config target.json
        --state-dir .run/backfill [--start-time T0] [--end-time T1] [--check-db flows.db]

`make backfill PARTITIONS=4` runs it against the services of `make up`: without
`--tap-config`/`--target-config` the configs are written for 127.0.0.1:$FLOWS_API_PORT and
the emulator on 127.0.0.1:$BQ_EMULATOR_PORT (project $BQ_PROJECT, dataset
$BACKFILL_DATASET, default `flows_backfill`).

[start_time, end_time) is split into N equal time ranges (unset bounds are found by probing
the API: its first row's time, and the largest time with a row, by binary search on
`since`). Each range runs as its own `tap-flows | target-bigquery-lite` pipe, with the
tap's `start_time`/`end_time` set to the range, and its own state file and log in the state
folder (named after the range, so a rerun with the same range finds them). All the pipes
MERGE into the same table: their rows never overlap (the ranges are disjoint and
`end_time` is exclusive), and each target retries BigQuery's concurrent-update error as
transient, so concurrent MERGEs into one table are safe.

Every STATE line a target prints (it prints one only after the rows before it are
committed) replaces its partition's state file at once, atomically (temporary file, fsync,
rename): a partition killed after hours of work resumes from its last commit, not from
its start. A range whose pipe ends cleanly gets a `.done` marker. The range and the partition count
are kept in `plan.json`, so a rerun splits the same range the same way even if the source
has grown meanwhile (rows after it are the next incremental run's). A rerun skips the
ranges that are done and resumes the others from their state files, so after a killed
partition only that partition runs again. With `--check-db` (the flows-api SQLite file)
the table is compared with the source at the end: row count, distinct ids, time range and
sum(byte_count) of the whole range must match. A lock file keeps two backfills from
sharing a state folder.

Why pipes run here rather than as Meltano jobs (or `scripts/run-pipe.sh`): N is a
command-line choice, not N inherited plugins written into meltano.yml; each partition's
state is a plain file next to its log, saved after every commit rather than when the run
ends; and each pipe is two processes instead of three (no `meltano run` parent, ~2 s of
start-up each). The tap and the target are the same either way.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import requests
from dev_services.bigquery_emulator import emulator_client
from dev_services.flows_check import Figures, table_figures
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STREAM_PATH = "/api/v1/stream/flows.json"


@dataclass(frozen=True)
class Partition:
    """One time range of the backfill and its files in the state folder."""

    index: int
    count: int
    start: int
    end: int
    folder: Path

    @property
    def name(self) -> str:
        """Files are named after the range, so a rerun over the same range finds them."""
        return f"{self.start}-{self.end}"

    @property
    def label(self) -> str:
        """`partition 2/4 [t0, t1)`, for messages."""
        return f"partition {self.index}/{self.count} [{self.start}, {self.end})"

    def path(self, suffix: str) -> Path:
        """The partition's file with this suffix (`.state.json`, `.done`, `.log`, ...)."""
        return self.folder / f"{self.name}{suffix}"

    def bookmark(self) -> int | None:
        """The bookmark of the partition's saved state, if it has one."""
        try:
            state = json.loads(self.path(".state.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return state.get("bookmarks", {}).get("flows", {}).get("replication_key_value")


def split(start: int, end: int, count: int, folder: Path) -> list[Partition]:
    """Cut [start, end) into `count` contiguous ranges of (nearly) equal length."""
    count = max(1, min(count, end - start))
    bounds = [start + (end - start) * i // count for i in range(count + 1)]
    return [
        Partition(i + 1, count, bounds[i], bounds[i + 1], folder)
        for i in range(count)
        if bounds[i] < bounds[i + 1]
    ]


class Probe:
    """Finds the source's time range with cheap `limit=1` requests (indexed on the server)."""

    def __init__(self, api_url: str, api_key: str | None) -> None:
        """Ask `api_url`, with the bearer key if there is one."""
        self.url = api_url.rstrip("/") + STREAM_PATH
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def first_time_from(self, since: int) -> int | None:
        """The time of the first row with `time >= since`, or None."""
        response = self.session.get(self.url, params={"since": since, "limit": 1}, timeout=60)
        response.raise_for_status()
        line = response.content.strip()
        return json.loads(line)["time"] if line else None

    def time_range(self) -> tuple[int, int] | None:
        """[first time, last time + 1) of the source, or None when it is empty."""
        first = self.first_time_from(0)
        if first is None:
            return None
        low, high = first, max(1, first) * 2  # a row has time >= low; find one without
        while self.first_time_from(high) is not None:
            low, high = high, high * 2
        while high - low > 1:  # invariant: rows at >= low, none at >= high
            middle = (low + high) // 2
            if self.first_time_from(middle) is None:
                high = middle
            else:
                low = middle
        return first, high


class PartitionRun(threading.Thread):
    """One partition's pipe: tap and target in their own process group, states saved live."""

    def __init__(
        self,
        partition: Partition,
        tap: dict[str, Any],
        target_config: Path,
        finished: queue.Queue[PartitionRun],
    ) -> None:
        """Prepare the pipe; `start()` runs it in this thread, which ends in `finished`."""
        super().__init__(name=partition.name, daemon=True)
        self.partition = partition
        self.tap = tap
        self.target_config = target_config
        self.group: int | None = None
        self.codes: tuple[int, int] | None = None
        self.finished = finished

    def run(self) -> None:
        """Run the pipe; whatever happens, report to `finished`."""
        try:
            self.run_pipe()
        finally:
            self.finished.put(self)

    def run_pipe(self) -> None:
        """Run tap | target to the end, saving each STATE the target prints."""
        part = self.partition
        tap_config = part.path(".tap.json")
        tap_config.write_text(
            json.dumps({**self.tap, "start_time": part.start, "end_time": part.end})
        )
        command = [str(BIN / "tap-flows"), "--config", str(tap_config)]
        if part.bookmark() is not None:
            command += ["--state", str(part.path(".state.json"))]
        with open(part.path(".log"), "ab") as log:
            tap = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, process_group=0)
            self.group = tap.pid
            part.path(".pid").write_text(str(tap.pid))
            target = subprocess.Popen(
                [str(BIN / "target-bigquery-lite"), "--config", str(self.target_config)],
                stdin=tap.stdout,
                stdout=subprocess.PIPE,
                stderr=log,
                process_group=tap.pid,
            )
            assert tap.stdout is not None
            assert target.stdout is not None
            tap.stdout.close()  # the target holds the pipe now
            for line in target.stdout:
                if line.strip():
                    save_state(part.path(".state.json"), line)
            self.codes = (tap.wait(), target.wait())
        part.path(".pid").unlink(missing_ok=True)

    def stop(self) -> None:
        """SIGTERM the pipe (tap and target)."""
        if self.group is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.group, signal.SIGTERM)


def save_state(path: Path, line: bytes) -> None:
    """Replace the state file with one STATE line, atomically and durably."""
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as out:
        out.write(line if line.endswith(b"\n") else line + b"\n")
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)


def run(
    partitions: list[Partition],
    tap: dict[str, Any],
    target_config: Path,
    table_exists: Callable[[], bool],
) -> list[Partition]:
    """Run the partitions not done yet, in parallel; return those that failed.

    The first one starts alone until the table exists: the targets create the dataset
    and the table with `exists_ok`, which is safe on BigQuery, but the emulator fails
    concurrent creations ("Failed to commit DuckLake transaction").
    """
    pending = [p for p in partitions if not p.path(".done").exists()]
    for partition in partitions:
        if partition not in pending:
            print(f"backfill: {partition.label}: done in an earlier run, skipped", flush=True)
    runs: list[PartitionRun] = []
    finished: queue.Queue[PartitionRun] = queue.Queue()

    def stop_all(signum: int, _frame: object) -> None:
        for started in runs:
            started.stop()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for number, partition in enumerate(pending):
        bookmark = partition.bookmark()
        resume = (
            f"resuming from its state (bookmark {bookmark})"
            if bookmark is not None
            else "from the start"
        )
        print(f"backfill: {partition.label}: {resume}", flush=True)
        pipe = PartitionRun(partition, tap, target_config, finished)
        runs.append(pipe)
        pipe.start()
        if number == 0 and len(pending) > 1:
            wait_for_table(table_exists, pipe)
    failed = []
    for _ in runs:  # each as it ends, so a finished partition is marked done at once
        pipe = finished.get()
        partition, codes = pipe.partition, pipe.codes
        if codes == (0, 0):
            partition.path(".done").write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
            print(f"backfill: {partition.label}: done", flush=True)
        else:
            failed.append(partition)
            print(
                f"backfill: {partition.label}: FAILED (tap, target exit codes {codes}); "
                f"see {partition.path('.log')}",
                file=sys.stderr,
                flush=True,
            )
    return failed


def wait_for_table(table_exists: Callable[[], bool], first: PartitionRun) -> None:
    """Poll (with a growing interval) until the table exists or the first pipe has ended."""
    delay = 0.05
    while first.is_alive() and not table_exists():
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def check(client: bigquery.Client, table: str, db: Path, start: int, end: int) -> bool:
    """Whether the table holds exactly the source rows of [start, end)."""
    expected = range_figures(db, start, end)
    actual = table_figures(client, table)
    print(f"backfill: BigQuery {table}: {actual.describe()}", flush=True)
    print(f"backfill: source [{start}, {end}): {expected.describe()}", flush=True)
    return actual == expected


def range_figures(db: Path, start: int, end: int) -> Figures:
    """Source figures (as `flows_check` computes them) of the rows with start <= time < end."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT id), min(time), max(time), sum(byte_count) "
            "FROM flows WHERE time >= ? AND time < ?",
            (start, end),
        ).fetchone()
    finally:
        conn.close()
    return Figures(*row)


def exists(client: bigquery.Client, table: str) -> bool:
    """Whether `dataset.table` exists yet."""
    try:
        client.get_table(table)
    except NotFound:
        return False
    return True


def bigquery_client(target: dict[str, Any]) -> bigquery.Client:
    """A client for the target's project: the emulator's when `api_endpoint` is set."""
    if target.get("api_endpoint"):
        return emulator_client(target["api_endpoint"], target["project"])
    if target.get("credentials_path"):
        return bigquery.Client.from_service_account_json(
            target["credentials_path"], project=target["project"]
        )
    return bigquery.Client(project=target["project"])


def local_configs(folder: Path) -> tuple[Path, Path]:
    """Tap and target configs for the local services of `make up` (ports from the env)."""
    tap = folder / "tap.json"
    tap.write_text(
        json.dumps({"api_url": f"http://127.0.0.1:{os.environ.get('FLOWS_API_PORT', '5055')}"})
    )
    target = folder / "target.json"
    target.write_text(
        json.dumps(
            {
                "project": os.environ.get("BQ_PROJECT", "flows-local"),
                "dataset": os.environ.get("BACKFILL_DATASET", "flows_backfill"),
                "api_endpoint": f"http://127.0.0.1:{os.environ.get('BQ_EMULATOR_PORT', '9050')}",
                "staging_dir": str(folder / "staging"),
            }
        )
    )
    return tap, target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=4, help="parallel pipes (default 4)")
    parser.add_argument("--tap-config", type=Path, help="tap-flows config (default: make up's)")
    parser.add_argument("--target-config", type=Path, help="target config (default: make up's)")
    parser.add_argument("--state-dir", type=Path, required=True, help="per-partition files")
    parser.add_argument("--start-time", type=int, help="first time (default: the source's)")
    parser.add_argument("--end-time", type=int, help="exclusive end (default: after the last)")
    parser.add_argument("--check-db", type=Path, help="flows-api SQLite file to compare with")
    args = parser.parse_args(argv)
    if args.partitions < 1:
        parser.error("--partitions must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the backfill; 0 when every partition is done (and the check passed)."""
    args = parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    lock = open(args.state_dir / "backfill.lock", "w")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"backfill: another backfill holds {lock.name}; not starting", file=sys.stderr)
        return 75
    if args.tap_config is None or args.target_config is None:
        args.tap_config, args.target_config = local_configs(args.state_dir)
    tap = json.loads(args.tap_config.read_text())
    target = json.loads(args.target_config.read_text())
    plan_file = args.state_dir / "plan.json"
    plan = json.loads(plan_file.read_text()) if plan_file.exists() else {}
    if plan and plan["partitions"] != args.partitions:
        print(
            f"backfill: {args.state_dir} holds a backfill in {plan['partitions']} partitions; "
            "rerun it with the same --partitions, or use another --state-dir",
            file=sys.stderr,
        )
        return 2
    start = args.start_time if args.start_time is not None else plan.get("start")
    end = args.end_time if args.end_time is not None else plan.get("end")
    if start is None or end is None:
        found = Probe(tap["api_url"], tap.get("api_key")).time_range()
        if found is None:
            print("backfill: the source has no rows; nothing to do", flush=True)
            return 0
        start = found[0] if start is None else start
        end = found[1] if end is None else end
    # A rerun keeps the first run's range, even if the source has grown since: the
    # partitions (and their state files) must be the same ones.
    plan_file.write_text(json.dumps({"start": start, "end": end, "partitions": args.partitions}))
    partitions = split(start, end, args.partitions, args.state_dir.resolve())
    print(f"backfill: [{start}, {end}) in {len(partitions)} partition(s)", flush=True)
    started = time.monotonic()
    client = bigquery_client(target)
    table = f"{target['dataset']}.{target.get('table_prefix', '')}flows"
    failed = run(partitions, tap, args.target_config.resolve(), partial(exists, client, table))
    seconds = time.monotonic() - started
    if failed:
        print(
            f"backfill: {len(failed)} partition(s) failed after {seconds:.1f} s; run the same "
            "command again to resume them (the others are done)",
            file=sys.stderr,
        )
        return 1
    print(f"backfill: all {len(partitions)} partition(s) done in {seconds:.1f} s", flush=True)
    if args.check_db is not None:
        if not check(client, table, args.check_db, start, end):
            print("backfill: CHECK FAILED: the table differs from the source", file=sys.stderr)
            return 1
        print("backfill: OK: the table holds exactly the source rows", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
