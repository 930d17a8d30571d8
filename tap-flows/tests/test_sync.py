"""End-to-end runs of the `tap-flows` executable against a real flows-api."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from .conftest import BLOCK_SIZE, BLOCK_TIME, ROWS, db_rows
from .tap_process import discover, run_tap


def assert_states_never_ahead(messages: list[dict]) -> None:
    """No STATE bookmark is past a row the run emits after it."""
    bookmark = None
    for message in messages:
        if message["type"] == "STATE":
            bookmark = message["value"]["bookmarks"]["flows"]["replication_key_value"]
        elif message["type"] == "RECORD" and bookmark is not None:
            assert message["record"]["time"] >= bookmark, (message, bookmark)


def test_full_run_emits_exactly_the_database(
    tmp_path: Path, flows_api_url: str, flows_db: Path
) -> None:
    run = run_tap(tmp_path, {"api_url": flows_api_url, "page_size": 3_000})

    assert run.returncode == 0, run.stderr
    expected = db_rows(flows_db)
    assert len(run.records) == ROWS
    assert len({r["id"] for r in run.records}) == ROWS
    assert sum(r["byte_count"] for r in run.records) == sum(r["byte_count"] for r in expected)
    assert run.records == expected  # every field, in (time, id) order
    assert run.final_bookmark == max(r["time"] for r in expected)
    assert "progress_markers" not in run.states[-1]["bookmarks"]["flows"]
    assert run.types()[0] == "SCHEMA"
    assert run.types()[-1] == "STATE"
    assert_states_never_ahead(run.messages)


def test_one_state_per_page_and_a_final_one(tmp_path: Path, flows_api_url: str) -> None:
    page_size = 1_500  # 20,000 rows: 13 full pages and a short one
    run = run_tap(tmp_path, {"api_url": flows_api_url, "page_size": page_size})

    assert run.returncode == 0, run.stderr
    records_before_each_state = []
    count = 0
    for message in run.messages:
        count += message["type"] == "RECORD"
        if message["type"] == "STATE":
            records_before_each_state.append(count)
    full_pages = ROWS // page_size
    assert records_before_each_state == [page_size * (n + 1) for n in range(full_pages)] + [ROWS]
    bookmarks = [s["bookmarks"]["flows"]["replication_key_value"] for s in run.states]
    assert bookmarks == sorted(bookmarks)
    assert_states_never_ahead(run.messages)


def test_start_and_end_time_bound_the_run_and_partition_it(
    tmp_path: Path, flows_api_url: str, flows_db: Path
) -> None:
    all_rows = db_rows(flows_db)
    start, middle, end = (all_rows[n]["time"] for n in (2_000, 9_000, 15_000))
    base = {"api_url": flows_api_url, "page_size": 2_500}

    first = run_tap(tmp_path / "a", {**base, "start_time": start, "end_time": middle})
    second = run_tap(tmp_path / "b", {**base, "start_time": middle, "end_time": end})

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.records == [r for r in all_rows if start <= r["time"] < middle]
    assert second.records == [r for r in all_rows if middle <= r["time"] < end]
    assert first.final_bookmark < middle <= second.records[0]["time"]


@pytest.mark.parametrize("page_size", [997, 1_000, 4_999])
def test_page_boundaries_inside_a_shared_time_block_lose_and_repeat_nothing(
    tmp_path: Path, block_api_url: str, block_db: Path, page_size: int
) -> None:
    run = run_tap(tmp_path, {"api_url": block_api_url, "page_size": page_size})

    assert run.returncode == 0, run.stderr
    assert run.records == db_rows(block_db)
    assert_states_never_ahead(run.messages)
    # The block really straddles pages: some STATE was emitted in the middle of it.
    inside = [
        i
        for i, m in enumerate(run.messages)
        if m["type"] == "STATE"
        and m["value"]["bookmarks"]["flows"]["replication_key_value"] == BLOCK_TIME
        and run.messages[i + 1].get("record", {}).get("time") == BLOCK_TIME
    ]
    assert inside, "no page boundary fell inside the block"


def test_a_state_saved_inside_the_block_resumes_without_loss(
    tmp_path: Path, block_api_url: str, block_db: Path
) -> None:
    """A pipeline killed after a STATE in the middle of the block re-reads the block whole."""
    first = run_tap(tmp_path / "first", {"api_url": block_api_url, "page_size": 4_000})
    mid_block = next(
        s for s in first.states if s["bookmarks"]["flows"]["replication_key_value"] == BLOCK_TIME
    )

    resumed = run_tap(
        tmp_path / "resumed", {"api_url": block_api_url, "page_size": 4_000}, state=mid_block
    )

    assert resumed.returncode == 0, resumed.stderr
    assert resumed.records == db_rows(block_db, "time >= ?", (BLOCK_TIME,))
    assert sum(r["time"] == BLOCK_TIME for r in resumed.records) == BLOCK_SIZE


def test_property_selection_and_stream_maps_still_apply(
    tmp_path: Path, flows_api_url: str, flows_db: Path
) -> None:
    catalog = discover(tmp_path, {"api_url": flows_api_url})
    for entry in catalog["streams"][0]["metadata"]:
        if entry["breadcrumb"] == ["properties", "duration"]:
            entry["metadata"]["selected"] = False
    config = {
        "api_url": flows_api_url,
        "page_size": 4_000,
        "stream_maps": {
            "flows": {
                "__filter__": "protocol == 17",
                "bytes_per_packet": "byte_count // packet_count",
                "src_port": None,
            }
        },
    }

    run = run_tap(tmp_path, config, catalog=catalog)

    assert run.returncode == 0, run.stderr
    udp = [r for r in db_rows(flows_db) if r["protocol"] == 17]
    assert [r["id"] for r in run.records] == [r["id"] for r in udp]
    assert set(run.records[0]) == {
        "id", "time", "src_comp", "dst_comp", "dst_port", "protocol", "packet_count",
        "byte_count", "bytes_per_packet",
    }  # fmt: skip
    assert all(r["bytes_per_packet"] == r["byte_count"] // r["packet_count"] for r in run.records)
    schema = next(m for m in run.messages if m["type"] == "SCHEMA")["schema"]
    assert "duration" not in schema["properties"]
    assert "src_port" not in schema["properties"]
    # Filtered-out rows still move the bookmark: the run read them all.
    assert run.final_bookmark == max(r["time"] for r in db_rows(flows_db))


def test_batch_messages_carry_every_row(tmp_path: Path, flows_api_url: str, flows_db: Path) -> None:
    batches = tmp_path / "batches"
    batches.mkdir()
    config = {
        "api_url": flows_api_url,
        "page_size": 5_000,
        "batch_config": {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": batches.as_uri(), "prefix": "flows-"},
            "batch_size": 6_000,
        },
    }

    run = run_tap(tmp_path, config)

    assert run.returncode == 0, run.stderr
    manifests = [m["manifest"] for m in run.messages if m["type"] == "BATCH"]
    assert len(manifests) == 4  # 20,000 rows in batches of 6,000
    rows = [
        json.loads(line)
        for manifest in manifests
        for url in manifest
        for line in gzip.decompress(Path(url.removeprefix("file://")).read_bytes()).splitlines()
    ]
    assert rows == db_rows(flows_db)
    assert run.final_bookmark == rows[-1]["time"]


def test_discovery_describes_the_flows_stream(tmp_path: Path, flows_api_url: str) -> None:
    catalog = discover(tmp_path, {"api_url": flows_api_url})

    (stream,) = catalog["streams"]
    assert stream["tap_stream_id"] == "flows"
    assert stream["key_properties"] == ["id"]
    assert stream["replication_key"] == "time"
    assert stream["replication_method"] == "INCREMENTAL"
    types = {name: prop["type"] for name, prop in stream["schema"]["properties"].items()}
    assert types == {
        "id": "integer", "time": "integer", "duration": "integer", "src_comp": "string",
        "src_port": "string", "dst_comp": "string", "dst_port": "string",
        "protocol": "integer", "packet_count": "integer", "byte_count": "integer",
    }  # fmt: skip
