"""BATCH messages written by singer-sdk's own encoder load the same rows as RECORD messages."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery

from tests.conftest import query, run_target, target_env, write_config

TAP = Path(__file__).parent / "sdk_batch_tap.py"
COLUMNS = "id, name, tags, address.city AS city"


def tap_output(tmp_path: Path, batch: bool) -> bytes:
    """The test tap's Singer output, RECORD messages or (with batch_config) BATCH messages."""
    config: dict[str, Any] = {}
    if batch:
        config["batch_config"] = {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": (tmp_path / "batches").as_uri(), "prefix": "people-"},
            "batch_size": 10,
        }
    path = write_config(tmp_path / f"tap-{batch}.json", **config)
    proc = subprocess.run(
        [sys.executable, str(TAP), "--config", str(path)],
        capture_output=True, check=True, env=target_env(), timeout=120,
    )  # fmt: skip
    return proc.stdout


def people(client: bigquery.Client, dataset: str, table: str) -> list[dict[str, Any]]:
    return query(client, f"SELECT {COLUMNS} FROM `flows-local.{dataset}.{table}` ORDER BY id")


def gunzip_manifests(output: bytes) -> bytes:
    """Rewrite BATCH messages to point at uncompressed copies of their files."""
    lines = []
    for line in output.splitlines():
        message = json.loads(line)
        if message["type"] == "BATCH":
            plain = []
            for url in message["manifest"]:
                source = Path(url.removeprefix("file://"))
                target = source.with_suffix("")  # .json.gz -> .json
                target.write_bytes(gzip.decompress(source.read_bytes()))
                plain.append(target.as_uri())
            message["manifest"] = plain
            message["encoding"]["compression"] = "none"
        lines.append(json.dumps(message).encode())
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize(
    ("validate", "compressed", "method"),
    [(True, True, None), (False, True, None), (False, False, None), (False, True, "append")],
    ids=["validated-gzip", "raw-gzip", "raw-plain", "raw-append"],
)
def test_batch_messages_load_the_same_rows_as_records(
    validate: bool,
    compressed: bool,
    method: str | None,
    tmp_path: Path,
    target_config: Callable[..., Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    settings: dict[str, Any] = {"validate_records": validate}
    if method:
        settings["load_method"] = method
    records = run_target(
        target_config(table_prefix="records_", **settings), tap_output(tmp_path, False)
    )
    assert records.returncode == 0, records.stderr
    batch_input = tap_output(tmp_path, True)
    assert b'"type":"BATCH"' in batch_input
    assert b'"type":"RECORD"' not in batch_input
    if not compressed:
        batch_input = gunzip_manifests(batch_input)
    batches = run_target(target_config(table_prefix="batches_", **settings), batch_input)
    assert batches.returncode == 0, batches.stderr
    from_records = people(bq_client, bq_dataset, "records_people")
    assert people(bq_client, bq_dataset, "batches_people") == from_records
    assert batches.states == records.states
    expected = 26 if method == "append" else 25  # 25 people, person 3 sent twice
    assert len(from_records) == expected
    if method is None:  # merge: the later copy of person 3 won, in both modes
        third = [row for row in from_records if row["id"] == 3]
        assert third == [{"id": 3, "name": "person 3, renamed", "tags": [], "city": "Bergen"}]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("batch_manifest_not_local", "s3://bucket/people-1.json.gz is not a local file:// URL"),
        (
            "batch_missing_file",
            "batch file /nonexistent/target-bigquery-lite/people-1.jsonl does not exist",
        ),
        ("batch_parquet", "format 'parquet' is not supported (only jsonl)"),
    ],
)
def test_unusable_batch_messages_fail_clearly(
    name: str, message: str, target_config: Callable[..., Path], data_file: Callable[[str], Path]
) -> None:
    roots = [str(data_file(name).parent), "/nonexistent/target-bigquery-lite"]
    result = run_target(target_config(batch_roots=roots), data_file(name))
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_raw_batch_rows_with_a_null_key_fail_the_merge(
    tmp_path: Path, target_config: Callable[..., Path], rows: Callable[..., list[Any]]
) -> None:
    batch_file = tmp_path / "people.jsonl"
    batch_file.write_text('{"id": 1, "name": "a"}\n{"id": null, "name": "b"}\n')
    schema = {"properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
    lines = [
        {"type": "SCHEMA", "stream": "people", "schema": schema, "key_properties": ["id"]},
        {"type": "BATCH", "stream": "people", "encoding": {"format": "jsonl"},
         "manifest": [batch_file.as_uri()]},
        {"type": "STATE", "value": {"people": 2}},
    ]  # fmt: skip
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    result = run_target(target_config(validate_records=False), data)
    assert result.returncode == 1
    assert "a row of this batch has a null or missing key property" in result.stderr
    assert result.states == []
    assert rows("people") == []


def _batch_lines(folder: Path, files: int, rows: int) -> bytes:
    """SCHEMA, then one BATCH message per file of `rows` rows, then a STATE."""
    folder.mkdir(parents=True, exist_ok=True)
    schema = {"type": "SCHEMA", "stream": "events", "key_properties": ["id"],
              "schema": {"properties": {"id": {"type": "integer"}}}}  # fmt: skip
    lines = [json.dumps(schema)]
    for number in range(files):
        path = folder / f"events-{number}.jsonl"
        path.write_text("".join(f'{{"id": {number * rows + i}}}\n' for i in range(rows)))
        batch = {"type": "BATCH", "stream": "events", "encoding": {"format": "jsonl"},
                 "manifest": [path.as_uri()]}  # fmt: skip
        lines.append(json.dumps(batch))
    lines.append(json.dumps({"type": "STATE", "value": {"files": files}}))
    return "".join(line + "\n" for line in lines).encode()


@pytest.mark.parametrize("method", ["merge", "overwrite"])
def test_committed_batch_files_are_deleted(
    tmp_path: Path, target_config: Callable[..., Path], rows: Callable[..., list[Any]], method: str
) -> None:
    folder = tmp_path / "batches"
    data = _batch_lines(folder, files=4, rows=50)
    config = target_config(delete_batch_files=True, batch_max_rows=60, load_method=method)
    result = run_target(config, data)
    assert result.returncode == 0, result.stderr
    assert list(folder.iterdir()) == []
    assert [r["id"] for r in rows("events")] == list(range(200))


def test_batch_files_of_uncommitted_rows_stay(
    tmp_path: Path, target_config: Callable[..., Path]
) -> None:
    folder = tmp_path / "batches"
    data = _batch_lines(folder, files=3, rows=50)
    (folder / "events-2.jsonl").write_text('{"id": "not a number"}\n')
    result = run_target(target_config(delete_batch_files=True, batch_max_rows=50), data)
    assert result.returncode == 1
    assert "field 'id'" in result.stderr
    # events-0 was committed by its own flush; events-1 was staged, not committed
    assert sorted(p.name for p in folder.iterdir()) == ["events-1.jsonl", "events-2.jsonl"]
