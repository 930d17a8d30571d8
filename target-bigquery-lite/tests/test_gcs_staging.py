"""Cloud Storage staging end to end: the real target, google-cloud-storage, fake-gcs-server and
the emulator's load jobs reading `gs://` URIs.
"""

from __future__ import annotations

import base64
import json
import re
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import google_crc32c
import pytest
from google.cloud import bigquery, storage

from target_bigquery_lite.config import parse_settings
from target_bigquery_lite.gcs_staging import UPLOAD_CHUNK_SIZE, CloudStorageError, GcsStaging
from tests.conftest import run_target

Rows = Callable[..., list[dict[str, Any]]]
PREFIX = "archive/v1/"
OBJECT_RE = re.compile(
    r"^archive/v1/flows/dt=(?P<day>\d{4}-\d{2}-\d{2})/(?P<run>\w+)-(?P<batch>\d{6})-1\.jsonl$"
)


def records_of(path: Path) -> dict[int, dict[str, Any]]:
    """The latest record per id in a Singer file (what a merge table must hold)."""
    latest = {}
    for line in path.read_text().splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            latest[message["record"]["id"]] = message["record"]
    return latest


def objects(client: storage.Client, bucket: str) -> list[storage.Blob]:
    return sorted(client.list_blobs(bucket), key=lambda blob: blob.name)


@pytest.fixture
def gcs_config(
    target_config: Callable[..., Path], gcs_server: Any, gcs_bucket: str
) -> Callable[..., Path]:
    """`make(**overrides)` -> a target config staging in the test's bucket."""

    def make(**overrides: Any) -> Path:
        settings = {"gcs_bucket": gcs_bucket, "gcs_prefix": PREFIX, "gcs_endpoint": gcs_server.url}
        return target_config(**settings | overrides)

    return make


def test_batches_load_from_their_objects_which_are_deleted_once_committed(
    gcs_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    rows: Rows,
    tables: Callable[[], list[str]],
    bq_client: bigquery.Client,
    bq_dataset: str,
    gcs_client: storage.Client,
    gcs_bucket: str,
) -> None:
    source = data_file("thirty_flows_state_every_ten")
    result = run_target(gcs_config(batch_max_rows=10), source)

    assert result.returncode == 0, result.stderr
    assert rows("flows") == [records_of(source)[i] for i in range(1, 31)]
    assert result.states == [{"bookmarks": {"flows": {"id": n}}} for n in (10, 20, 30, 30)]
    assert objects(gcs_client, gcs_bucket) == []
    assert tables() == ["flows"]
    loads = [
        job for job in bq_client.list_jobs(all_users=True) if job.job_type == "load"
        and job.destination.dataset_id == bq_dataset
    ]  # fmt: skip
    uris = sorted(uri for job in loads for uri in job.source_uris)
    assert len(uris) == 3
    for batch, uri in enumerate(uris, 1):
        name = uri.removeprefix(f"gs://{gcs_bucket}/")
        found = OBJECT_RE.fullmatch(name)
        assert found, uri
        assert int(found["batch"]) == batch


def test_kept_objects_are_an_archive_named_by_table_day_run_and_batch(
    gcs_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    rows: Rows,
    gcs_client: storage.Client,
    gcs_bucket: str,
) -> None:
    source = data_file("thirty_flows_state_every_ten")
    before = datetime.now(UTC).date()
    result = run_target(gcs_config(batch_max_rows=10, gcs_keep_objects=True), source)
    after = datetime.now(UTC).date()

    assert result.returncode == 0, result.stderr
    assert len(rows("flows")) == 30
    kept = objects(gcs_client, gcs_bucket)
    names = [OBJECT_RE.fullmatch(blob.name) for blob in kept]
    assert all(names), [blob.name for blob in kept]
    assert [int(found["batch"]) for found in names] == [1, 2, 3]
    assert len({found["run"] for found in names}) == 1
    assert {found["day"] for found in names} <= {before.isoformat(), after.isoformat()}
    archived = [json.loads(line) for blob in kept for line in blob.download_as_bytes().splitlines()]
    assert [row["id"] for row in archived] == list(range(1, 31))
    assert [row["_bqlite_seq"] for row in archived] == list(range(1, 31))
    for blob in kept:
        assert blob.metadata["bqlite-method"] == "merge"
        assert json.loads(blob.metadata["bqlite-keys"]) == ["id"]
        assert blob.metadata["bqlite-rows"] == "10"
        columns = [field["name"] for field in json.loads(blob.metadata["bqlite-schema"])]
        assert columns == ["id", "time", "src_comp", "dst_comp", "byte_count", "_bqlite_seq"]

    again = run_target(gcs_config(batch_max_rows=10, gcs_keep_objects=True), source)
    assert again.returncode == 0, again.stderr
    assert len(rows("flows")) == 30
    runs = {OBJECT_RE.fullmatch(blob.name)["run"] for blob in objects(gcs_client, gcs_bucket)}
    assert len(runs) == 2  # a rerun writes objects of its own, never over the first run's


def test_a_missing_bucket_fails_in_one_line_before_any_batch_is_staged(
    target_config: Callable[..., Path], gcs_server: Any, data_file: Callable[[str], Path]
) -> None:
    config = target_config(gcs_bucket="no-such-bucket-here", gcs_endpoint=gcs_server.url)
    result = run_target(config, data_file("thirty_flows_state_every_ten"))

    assert result.returncode == 2
    assert "config: gcs_bucket 'no-such-bucket-here' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.states == []


def staging(gcs_server: Any, bucket: str, run_id: str = "20240101000000_feedf00d") -> GcsStaging:
    settings, _ = parse_settings(
        {"project": "flows-local", "dataset": "d", "gcs_bucket": bucket,
         "gcs_prefix": PREFIX, "gcs_endpoint": gcs_server.url}
    )  # fmt: skip
    return GcsStaging(settings, run_id)


def test_a_large_file_is_streamed_in_bounded_chunks_and_arrives_intact(
    tmp_path: Path, gcs_server: Any, gcs_client: storage.Client, gcs_bucket: str
) -> None:
    path = tmp_path / "big.ndjson"
    line = b'{"id": 1, "padding": "' + b"x" * 1000 + b'"}\n'
    with path.open("wb") as out:
        for _ in range(5 * UPLOAD_CHUNK_SIZE // len(line)):
            out.write(line)
    size = path.stat().st_size
    assert size > 4 * UPLOAD_CHUNK_SIZE
    objects_ = staging(gcs_server, gcs_bucket)

    tracemalloc.start()
    try:
        [uri] = objects_.upload(1, "flows", path, {"bqlite-rows": "1"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 3 * UPLOAD_CHUNK_SIZE < size  # one chunk (and its request) at a time
    blob = gcs_client.bucket(gcs_bucket).get_blob(uri.removeprefix(f"gs://{gcs_bucket}/"))
    assert blob.size == size
    checksum = google_crc32c.Checksum()
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            checksum.update(block)
    assert blob.crc32c == base64.b64encode(checksum.digest()).decode()
    assert blob.metadata == {"bqlite-rows": "1"}


def test_an_object_is_never_overwritten_and_a_retry_that_finds_it_checks_its_size(
    tmp_path: Path, gcs_server: Any, gcs_client: storage.Client, gcs_bucket: str
) -> None:
    path = tmp_path / "batch.ndjson"
    path.write_bytes(b'{"id": 1}\n')
    [uri] = staging(gcs_server, gcs_bucket).upload(3, "flows", path, {})
    name = uri.removeprefix(f"gs://{gcs_bucket}/")
    generation = gcs_client.bucket(gcs_bucket).get_blob(name).generation

    assert staging(gcs_server, gcs_bucket).upload(3, "flows", path, {}) == [uri]  # arrived
    assert gcs_client.bucket(gcs_bucket).get_blob(name).generation == generation
    path.write_bytes(b'{"id": 1}\n{"id": 2}\n')
    with pytest.raises(CloudStorageError, match="exists with 10 bytes, not the 20"):
        staging(gcs_server, gcs_bucket).upload(3, "flows", path, {})
    assert gcs_client.bucket(gcs_bucket).get_blob(name).download_as_bytes() == b'{"id": 1}\n'
