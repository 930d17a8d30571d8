"""STATE only after commit (observed through a real pipe), and failures that keep it honest."""

from __future__ import annotations

import json
import select
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest
from dev_services.bigquery_emulator import emulator_client
from dev_services.process import Service
from google.cloud import bigquery

from tests.conftest import TARGET, Result, query, run_target, target_env, write_config

QUIET_SECONDS = 0.7  # how long a STATE that must not appear yet is given to (wrongly) appear


class Pipe:
    """The target as a subprocess fed line by line, its stdout read line by line."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [*TARGET, "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=target_env(),
        )
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout

    def send(self, lines: list[str]) -> None:
        self.stdin.write("".join(line + "\n" for line in lines).encode())
        self.stdin.flush()

    def next_state(self, timeout: float = 60) -> Any:
        ready, _, _ = select.select([self.stdout], [], [], timeout)
        assert ready, "no STATE line in time"
        line = self.stdout.readline()
        assert line, f"stdout closed; stderr:\n{self.finish().stderr}"
        return json.loads(line)

    def quiet(self) -> bool:
        ready, _, _ = select.select([self.stdout], [], [], QUIET_SECONDS)
        return not ready

    def finish(self) -> Result:
        if self.stdin.closed:
            self.proc.stdin = None  # communicate() would flush it
        stdout, stderr = self.proc.communicate(timeout=120)
        return Result(self.proc.returncode, (stdout or b"").decode(), stderr.decode())


def ids_committed(client: bigquery.Client, dataset: str, up_to: int) -> int:
    table = f"`{client.project}.{dataset}.flows`"
    tables = {t.table_id for t in client.list_tables(dataset)}
    if "flows" not in tables:
        return 0
    sql = f"SELECT COUNT(DISTINCT id) AS n FROM {table} WHERE id <= {int(up_to)}"
    return query(client, sql)[0]["n"]


def test_each_state_appears_only_when_its_rows_are_queryable(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    lines = data_file("state_after_commit").read_text().splitlines()
    schema, state0, body = lines[0], lines[1], lines[2:]
    pipe = Pipe(target_config(batch_max_rows=4, batch_max_seconds=3600))
    pipe.send([schema, state0])
    # nothing pending: the first STATE goes out at once
    assert pipe.next_state() == {"bookmarks": {"flows": {"id": 0}}}
    # records 1-2 and STATE(2): below batch_max_rows, so nothing may be committed or emitted
    pipe.send(body[:3])
    assert pipe.quiet()
    assert ids_committed(bq_client, bq_dataset, 2) == 0
    # records 3-4 fill the batch; STATE(2) and STATE(4) are both covered by it, so the newer
    # one goes out, and only once rows 1-4 are in the table
    pipe.send(body[3:6])
    assert pipe.next_state() == {"bookmarks": {"flows": {"id": 4}}}
    assert ids_committed(bq_client, bq_dataset, 4) == 4
    pipe.send(body[6:])
    result = pipe.finish()
    assert result.returncode == 0, result.stderr
    final = [state["bookmarks"]["flows"]["id"] for state in result.states]
    assert final == [8, 10, 10]  # flush at 8; the end flushes 9-10; the last state again
    assert ids_committed(bq_client, bq_dataset, 10) == 10


def test_batch_max_seconds_flushes_an_idle_stream(
    target_config: Callable[..., Path], bq_client: bigquery.Client, bq_dataset: str
) -> None:
    pipe = Pipe(target_config(batch_max_seconds=0.5))
    schema = {"type": "object", "properties": {"id": {"type": "integer"}}}
    pipe.send([
        json.dumps({"type": "SCHEMA", "stream": "flows", "schema": schema, "key_properties": []}),
        json.dumps({"type": "RECORD", "stream": "flows", "record": {"id": 1}}),
        json.dumps({"type": "STATE", "value": {"at": 1}}),
    ])  # fmt: skip
    assert pipe.next_state() == {"at": 1}  # input still open: the timer flushed
    assert ids_committed(bq_client, bq_dataset, 1) == 1
    assert pipe.finish().returncode == 0


def test_record_violating_the_schema_mid_stream(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    rows: Callable[..., list[dict[str, Any]]],
) -> None:
    config = target_config(batch_max_rows=2)
    result = run_target(config, data_file("record_violates_schema_midstream"))
    assert result.returncode == 1
    assert (
        "stream 'flows', record 5 violates its schema: field 'time': 'yesterday' is not of "
        "type 'integer' (input line 7)" in result.stderr
    )
    assert "Traceback" not in result.stderr
    # batches 1-2 and 3-4 may be committed; the STATE after record 2 only if its batch was
    assert result.states in ([], [{"bookmarks": {"flows": {"id": 2}}}])
    assert {r["id"] for r in rows("flows")} <= {1, 2, 3, 4}
    assert "staging files kept for inspection" not in result.stderr or "ndjson" in result.stderr


def test_bad_record_keeps_the_staged_files_and_names_them(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], tmp_path: Path
) -> None:
    result = run_target(target_config(), data_file("record_violates_schema_midstream"))
    assert result.returncode == 1
    kept = sorted((tmp_path / "staging").glob("run-*/*.ndjson"))
    assert len(kept) == 1
    assert f"staging files kept for inspection: {kept[0]}" in result.stderr
    assert [json.loads(line)["id"] for line in kept[0].read_text().splitlines()] == [1, 2, 3, 4]
    assert result.states == []


def test_truncated_last_line_fails_without_state(
    target_config: Callable[..., Path], data_file: Callable[[str], Path]
) -> None:
    result = run_target(target_config(), data_file("truncated_last_line"))
    assert result.returncode == 1
    assert "input ended in the middle of a message (line 5" in result.stderr
    assert result.states == []


def test_unknown_message_types_are_skipped_with_a_warning(
    target_config: Callable[..., Path], data_file: Callable[[str], Path]
) -> None:
    result = run_target(target_config(), data_file("unknown_message_type"))
    assert result.returncode == 0, result.stderr
    assert "skipping messages of unknown type 'METRIC' (first on line 2)" in result.stderr
    assert "'FANCY_NEW_THING'" in result.stderr
    assert result.states == [{"u": 1}] * 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_without_state_for_uncommitted_records(
    signum: signal.Signals,
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    tables: Callable[[], list[str]],
) -> None:
    pipe = Pipe(target_config())
    lines = data_file("upsert_same_key_twice").read_text().splitlines()
    pipe.send([lines[0], '{"type": "STATE", "value": {"before": "records"}}'])
    assert pipe.next_state() == {"before": "records"}  # the target is reading its input
    pipe.send(lines[1:])  # every record and a STATE, but the input stays open
    assert pipe.quiet()
    pipe.proc.send_signal(signum)
    result = pipe.finish()
    assert result.returncode == 128 + signum
    assert f"stopped by {signum.name}; no state emitted for uncommitted records" in result.stderr
    assert result.states == []  # nothing after the first, which preceded every record
    assert "staging files kept for inspection" in result.stderr
    assert tables() == ["flows"]  # created on SCHEMA; nothing loaded


def test_closed_stdout_is_reported_as_broken_pipe(
    target_config: Callable[..., Path], data_file: Callable[[str], Path]
) -> None:
    pipe = Pipe(target_config())
    pipe.stdout.close()
    pipe.proc.stdout = None
    pipe.send(data_file("upsert_same_key_twice").read_text().splitlines())
    result = pipe.finish()
    assert result.returncode == 1
    assert "stdout was closed (broken pipe)" in result.stderr
    assert "Traceback" not in result.stderr


def test_emulator_stopped_mid_run_then_rerun_completes_exactly(
    restartable_emulator: Callable[[], Service], data_file: Callable[[str], Path], tmp_path: Path
) -> None:
    emulator = restartable_emulator()
    client = emulator_client(emulator.url)
    client.create_dataset("crash")
    config = write_config(
        tmp_path / "target.json",
        project="flows-local",
        dataset="crash",
        api_endpoint=emulator.url,
        staging_dir=str(tmp_path / "staging"),
        batch_max_rows=10,
        max_retries=1,
    )
    lines = data_file("thirty_flows_state_every_ten").read_text().splitlines()
    pipe = Pipe(config)
    pipe.send(lines[:12])  # SCHEMA, records 1-10 (a full batch), STATE(10)
    assert pipe.next_state() == {"bookmarks": {"flows": {"id": 10}}}
    emulator.stop()
    pipe.send(lines[12:])
    result = pipe.finish()
    assert result.returncode == 1
    assert "failed after 2 tries" in result.stderr
    assert result.states == []  # nothing after STATE(10)

    client = emulator_client(restartable_emulator().url)
    assert ids_committed(client, "crash", 10) == 10  # the last STATE printed is committed

    resume = [lines[0], *lines[10:]]  # the tap resumes at its bookmark, re-sending id 10
    rerun = run_target(config, "\n".join(resume).encode() + b"\n")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.states[-1] == {"bookmarks": {"flows": {"id": 30}}}
    got = query(
        client, "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS d FROM `flows-local.crash.flows`"
    )
    assert got == [{"n": 30, "d": 30}]


def test_batch_max_bytes_flushes(
    target_config: Callable[..., Path], bq_client: bigquery.Client, bq_dataset: str
) -> None:
    pipe = Pipe(target_config(batch_max_bytes=5, batch_max_seconds=3600))
    schema = {"type": "object", "properties": {"id": {"type": "integer"}}}
    pipe.send([
        json.dumps({"type": "SCHEMA", "stream": "flows", "schema": schema, "key_properties": []}),
        json.dumps({"type": "RECORD", "stream": "flows", "record": {"id": 1}}),
        json.dumps({"type": "STATE", "value": {"at": 1}}),
    ])  # fmt: skip
    assert pipe.next_state() == {"at": 1}  # 9 bytes staged: flushed without waiting
    assert ids_committed(bq_client, bq_dataset, 1) == 1
    result = pipe.finish()
    assert result.returncode == 0
    assert "flush 1 (batch_max_bytes): 1 rows" in result.stderr
