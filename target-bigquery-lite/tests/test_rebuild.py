"""`target-bigquery-lite rebuild`: a table reloaded from its Cloud Storage archive equals it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery, storage

from tests.conftest import TARGET, TIMEOUT, Result, run_target, singer_lines, target_env

Rows = Callable[..., list[dict[str, Any]]]
PREFIX = "lake/"


def rebuild(config: Path, *args: str) -> Result:
    """Run `target-bigquery-lite rebuild --config CONFIG ARGS` to completion."""
    proc = subprocess.run(
        [*TARGET, "rebuild", "--config", str(config), *args],
        capture_output=True,
        timeout=TIMEOUT,
        env=target_env(),
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture
def archive_config(
    target_config: Callable[..., Path], gcs_server: Any, gcs_bucket: str
) -> Callable[..., Path]:
    """`make(**overrides)` -> a config keeping every batch's objects in the test's bucket."""

    def make(**overrides: Any) -> Path:
        settings = {
            "gcs_bucket": gcs_bucket,
            "gcs_prefix": PREFIX,
            "gcs_endpoint": gcs_server.url,
            "gcs_keep_objects": True,
        }
        return target_config(**settings | overrides)

    return make


def flows(first: int, last: int, version: int) -> bytes:
    """A flows stream with ids first..last, `byte_count` marking the version."""
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "time": {"type": "integer"},
            "src_comp": {"type": ["string", "null"]},
            "byte_count": {"type": ["integer", "null"]},
        },
        "required": ["id", "time"],
    }
    records = [
        {"type": "RECORD", "stream": "flows", "record": {
            "id": i, "time": i, "src_comp": f"C{i}", "byte_count": i * 100 + version}}
        for i in range(first, last + 1)
    ]  # fmt: skip
    state = {"type": "STATE", "value": {"bookmarks": {"flows": {"version": version}}}}
    return singer_lines(
        {"type": "SCHEMA", "stream": "flows", "schema": schema, "key_properties": ["id"]},
        *records,
        state,
    )


def test_drop_the_table_and_rebuild_it_row_for_row(
    archive_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    rows: Rows,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    config = archive_config(batch_max_rows=2)
    # keys updated within and across batches, then a second run updating some again
    assert run_target(config, data_file("upsert_across_batches")).returncode == 0
    assert run_target(config, flows(3, 6, version=7)).returncode == 0
    before = rows("flows")
    assert [(r["id"], r["byte_count"]) for r in before] == [
        (1, 111), (2, 22), (3, 307), (4, 407), (5, 507), (6, 607),
    ]  # fmt: skip
    bq_client.delete_table(f"{bq_dataset}.flows")

    result = rebuild(config, "--table", "flows")

    assert result.returncode == 0, result.stderr
    assert rows("flows") == before
    assert result.stdout.startswith(f"rebuilt {bq_dataset}.flows from 6 objects of 2 runs (")
    assert "11 rows loaded, 6 rows in the table" in result.stdout
    assert [t.table_id for t in bq_client.list_tables(bq_dataset)] == ["flows"]

    into = rebuild(config, "--table", "flows", "--into", "flows_copy")
    assert into.returncode == 0, into.stderr
    assert rows("flows_copy") == before
    again = rebuild(config, "--table", "flows")  # the live table, atomically replaced
    assert again.returncode == 0, again.stderr
    assert rows("flows") == before


def test_an_append_table_is_rebuilt_with_one_wildcard_uri_per_day(
    archive_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    rows: Rows,
    bq_client: bigquery.Client,
    bq_dataset: str,
    gcs_bucket: str,
) -> None:
    config = archive_config()
    for _ in range(2):
        assert run_target(config, data_file("append_events")).returncode == 0
    before = rows("events", order_by="n")
    assert len(before) == 6

    result = rebuild(config, "--table", "events", "--into", "events_rebuilt")

    assert result.returncode == 0, result.stderr
    assert rows("events_rebuilt", order_by="n") == before
    loads = [
        job for job in bq_client.list_jobs(all_users=True) if job.job_type == "load"
        and job.destination.table_id == "events_rebuilt"
    ]  # fmt: skip
    assert loads == []  # loaded into the build table, then swapped in
    builds = [
        job for job in bq_client.list_jobs(all_users=True) if job.job_type == "load"
        and job.destination.dataset_id == bq_dataset and job.job_id.startswith("bqlite_rebuild_")
    ]  # fmt: skip
    assert len(builds) == 1
    assert len(builds[0].source_uris) == 1
    assert builds[0].source_uris[0].startswith(f"gs://{gcs_bucket}/{PREFIX}events/dt=")
    assert builds[0].source_uris[0].endswith("/*.jsonl")


def test_from_and_to_pick_days_and_a_partial_rebuild_never_replaces_the_live_table(
    archive_config: Callable[..., Path],
    rows: Rows,
    gcs_client: storage.Client,
    gcs_bucket: str,
) -> None:
    config = archive_config()
    days = ("2024-03-01", "2024-03-02", "2024-03-03")
    bucket = gcs_client.bucket(gcs_bucket)
    for number, day in enumerate(days):
        assert run_target(config, flows(10 * number + 1, 10 * number + 5, number)).returncode == 0
        # as if this run had committed on `day`: its objects moved to that day's folder
        for blob in list(gcs_client.list_blobs(gcs_bucket, prefix=f"{PREFIX}flows/dt=2")):
            if not blob.name.startswith(f"{PREFIX}flows/dt=2024-"):
                moved = blob.name.replace(blob.name.split("/")[2], f"dt={day}")
                bucket.copy_blob(blob, bucket, moved)
                blob.delete()
    assert len(rows("flows")) == 15

    part = rebuild(config, "--table", "flows", "--from", days[1], "--to", days[2], "--into", "p")

    assert part.returncode == 0, part.stderr
    assert [r["id"] for r in rows("p")] == [*range(11, 16), *range(21, 26)]
    assert "2024-03-02..2024-03-03" in part.stdout
    one = rebuild(config, "--table", "flows", "--to", days[0], "--into", "p")
    assert one.returncode == 0, one.stderr
    assert [r["id"] for r in rows("p")] == list(range(1, 6))

    live = rebuild(config, "--table", "flows", "--from", days[1])
    assert live.returncode == 2
    assert "--from/--to would replace all of flows with those days only" in live.stderr
    assert len(rows("flows")) == 15
    none = rebuild(config, "--table", "flows", "--from", "2030-01-01", "--into", "q")
    assert none.returncode == 1
    assert f"no archived objects under gs://{gcs_bucket}/{PREFIX}flows/dt=*" in none.stderr
    bad = rebuild(config, "--table", "flows", "--from", "March 1st")
    assert bad.returncode == 2
    assert "not a day (YYYY-MM-DD): 'March 1st'" in bad.stderr
    assert part.stdout.count("\n") == 1
    assert "Traceback" not in part.stderr + live.stderr + none.stderr + bad.stderr
