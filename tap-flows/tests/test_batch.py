"""BATCH mode: files written straight from the API's body, STATE after each BATCH.

The fast path must produce exactly the rows RECORD mode emits (same bytes per row), in
files of `batch_size` rows, with each STATE covering only rows of BATCH messages sent
before it, through the same resumable requests; and step aside (RECORD messages) when
stream maps or deselected properties transform the records.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from dev_services.fault_proxy import Fault, FaultProxy

from .conftest import ROWS, db_rows
from .tap_process import TapRun, discover, run_tap

PAGE = 3_000


def batch_settings(
    api_url: str, root: Path, *, compression: str = "none", size: int = 7_000
) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    return {
        "api_url": api_url,
        "page_size": PAGE,
        "batch_config": {
            "encoding": {"format": "jsonl", "compression": compression},
            "storage": {"root": root.as_uri(), "prefix": "flows-"},
            "batch_size": size,
        },
    }


def batch_files(run: TapRun) -> list[Path]:
    return [
        Path(url.removeprefix("file://"))
        for message in run.messages
        if message["type"] == "BATCH"
        for url in message["manifest"]
    ]


def file_rows(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.splitlines()]


def assert_each_state_covers_only_sent_batches(run: TapRun) -> None:
    """Every STATE follows a BATCH whose last row has the bookmark's time; none is ahead."""
    sent: list[dict[str, Any]] = []
    for message in run.messages:
        if message["type"] == "BATCH":
            for url in message["manifest"]:
                sent += file_rows(Path(url.removeprefix("file://")))
        elif message["type"] == "STATE" and sent:
            bookmark = message["value"]["bookmarks"]["flows"]["replication_key_value"]
            assert bookmark == sent[-1]["time"]


@pytest.fixture(scope="module")
def record_lines(tmp_path_factory: pytest.TempPathFactory, flows_api_url: str) -> list[bytes]:
    """RECORD mode's rows, as the bytes of each record object."""
    run = run_tap(tmp_path_factory.mktemp("records"), {"api_url": flows_api_url})
    assert run.returncode == 0, run.stderr
    return [json.dumps(r, separators=(",", ":")).encode() for r in run.records]


def test_plain_batch_files_hold_the_record_mode_rows_byte_for_byte(
    tmp_path: Path, flows_api_url: str, record_lines: list[bytes]
) -> None:
    run = run_tap(tmp_path, batch_settings(flows_api_url, tmp_path / "b"))

    assert run.returncode == 0, run.stderr
    assert run.records == []
    files = batch_files(run)
    assert [len(file_rows(f)) for f in files] == [7_000, 7_000, ROWS - 14_000]
    assert b"".join(f.read_bytes() for f in files).splitlines() == record_lines
    assert run.types()[0] == "SCHEMA"
    assert run.types()[1:] == ["BATCH", "STATE"] * 3 + ["STATE"]
    assert_each_state_covers_only_sent_batches(run)
    assert run.final_bookmark == json.loads(record_lines[-1])["time"]
    assert "starting_replication_value" not in run.states[-1]["bookmarks"]["flows"]


def test_gzip_files_are_compressed_at_a_low_level(
    tmp_path: Path, flows_api_url: str, flows_db: Path
) -> None:
    run = run_tap(tmp_path, batch_settings(flows_api_url, tmp_path / "b", compression="gzip"))

    assert run.returncode == 0, run.stderr
    files = batch_files(run)
    assert all(f.name.endswith(".json.gz") for f in files)
    assert all(f.read_bytes()[8:9] == b"\x04" for f in files)  # gzip XFL: fastest level
    assert [row for f in files for row in file_rows(f)] == db_rows(flows_db)


def test_a_resumed_run_batches_from_the_bookmark(
    tmp_path: Path, flows_api_url: str, flows_db: Path
) -> None:
    rows = db_rows(flows_db)
    bookmark = rows[12_345]["time"]
    state = {"bookmarks": {"flows": {"replication_key": "time", "replication_key_value": bookmark}}}

    run = run_tap(tmp_path, batch_settings(flows_api_url, tmp_path / "b"), state=state)

    assert run.returncode == 0, run.stderr
    assert [row for f in batch_files(run) for row in file_rows(f)] == [
        r for r in rows if r["time"] >= bookmark
    ]
    assert_each_state_covers_only_sent_batches(run)


def test_cuts_errors_and_repeated_rows_leave_the_files_identical(
    tmp_path: Path, flows_api_url: str, record_lines: list[bytes]
) -> None:
    plan = [
        None,
        Fault.cut_after_bytes(50_000),
        Fault.status(503),
        Fault.truncate_mid_line(after_lines=1_234),
        Fault.duplicate_lines(after_lines=100, count=1),
    ]
    with FaultProxy(flows_api_url, plan) as proxy:
        run = run_tap(
            tmp_path, {**batch_settings(flows_api_url, tmp_path / "b"), "api_url": proxy.url}
        )

    assert run.returncode == 0, run.stderr
    assert b"".join(f.read_bytes() for f in batch_files(run)).splitlines() == record_lines
    assert "Dropped 1 repeats of the last row emitted" in run.stderr
    assert_each_state_covers_only_sent_batches(run)


def test_a_bad_line_fails_without_a_batch_or_state_for_its_file(
    tmp_path: Path, flows_api_url: str, record_lines: list[bytes]
) -> None:
    # Two pages per file: the garbage arrives in the second page of the second file.
    plan = [None, None, None, Fault.garbage_line(after_lines=10)]
    settings = batch_settings(flows_api_url, tmp_path / "b", size=2 * PAGE)
    with FaultProxy(flows_api_url, plan) as proxy:
        run = run_tap(tmp_path, {**settings, "api_url": proxy.url})

    assert run.returncode == 1
    assert "line 11 of the response is not valid JSON: b'<html>502 Bad Gateway</html>'" in (
        run.stderr
    )
    assert "Traceback" not in run.stderr
    files = batch_files(run)
    assert len(files) == 1
    assert files[0].read_bytes().splitlines() == record_lines[: 2 * PAGE]
    assert run.final_bookmark == json.loads(record_lines[2 * PAGE - 1])["time"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [files[0].name]


def test_stream_maps_or_deselected_properties_fall_back_to_record_messages(
    tmp_path: Path, flows_api_url: str, flows_db: Path
) -> None:
    catalog = discover(tmp_path, {"api_url": flows_api_url})
    for entry in catalog["streams"][0]["metadata"]:
        if entry["breadcrumb"] == ["properties", "duration"]:
            entry["metadata"]["selected"] = False
    mapped = {
        **batch_settings(flows_api_url, tmp_path / "mapped"),
        "stream_maps": {"flows": {"__filter__": "protocol == 17"}},
    }

    deselected = run_tap(
        tmp_path / "deselected", batch_settings(flows_api_url, tmp_path / "d"), catalog=catalog
    )
    filtered = run_tap(tmp_path / "filtered", mapped)

    for run in (deselected, filtered):
        assert run.returncode == 0, run.stderr
        assert "sending RECORD messages instead of BATCH" in run.stderr
        assert "BATCH" not in run.types()
    assert len(deselected.records) == ROWS
    assert all("duration" not in r for r in deselected.records)
    assert [r["id"] for r in filtered.records] == [
        r["id"] for r in db_rows(flows_db) if r["protocol"] == 17
    ]
