"""`load_method: dedup_view`: batches go to `<table>_raw`, a view shows the latest row per key.

The same battery as `merge` (duplicates within and across batches and runs, schema changes,
streams without keys, keys that cannot work, the exact STATE output), plus what only this
method has: the replication key ranks before arrival, and the raw table keeps every row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery

from tests.conftest import query, run_target, singer_lines

Rows = Callable[..., list[dict[str, Any]]]
DEDUP = {"load_method": "dedup_view"}


def schema(stream: str, properties: dict, keys: list[str], **extra: Any) -> dict:
    body = {"type": "object", "properties": properties}
    return {"type": "SCHEMA", "stream": stream, "schema": body, "key_properties": keys, **extra}


def record(stream: str, value: dict) -> dict:
    return {"type": "RECORD", "stream": stream, "record": value}


def test_duplicate_keys_in_one_batch_show_the_latest_and_keep_every_raw_row(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    rows: Rows,
    tables: Callable[[], list[str]],
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    result = run_target(target_config(**DEDUP), data_file("upsert_same_key_twice"))
    assert result.returncode == 0, result.stderr
    assert [(r["id"], r["byte_count"]) for r in rows("flows")] == [(1, 1000), (2, 200), (3, 3)]
    assert sorted((r["id"], r["byte_count"]) for r in rows("flows_raw")) == [
        (1, 1), (1, 100), (1, 1000), (2, 2), (2, 200), (3, 3),
    ]  # fmt: skip
    assert result.states == [{"bookmarks": {"flows": {"id": 3}}}] * 2
    assert tables() == ["flows", "flows_raw"]  # no staging table: nothing is merged
    view = bq_client.get_table(f"flows-local.{bq_dataset}.flows")
    assert view.table_type == "VIEW"
    assert "MERGE" not in result.stderr


def test_duplicate_keys_across_batches_show_the_latest(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    config = target_config(batch_max_rows=2, **DEDUP)
    result = run_target(config, data_file("upsert_across_batches"))
    assert result.returncode == 0, result.stderr
    assert "flush 4 (end of input): 1 rows" in result.stderr
    assert [(r["id"], r["byte_count"]) for r in rows("flows")] == [
        (1, 111), (2, 22), (3, 3), (4, 4),
    ]  # fmt: skip
    assert len(rows("flows_raw")) == 7
    assert result.states == [
        {"bookmarks": {"flows": {"id": 3}}},
        {"bookmarks": {"flows": {"id": 4}}},
        {"bookmarks": {"flows": {"id": 4}}},
    ]


def test_a_later_run_ranks_above_an_earlier_one(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    config = target_config(**DEDUP)
    assert run_target(config, data_file("upsert_across_batches")).returncode == 0
    # the same keys again, with other values: the second run's rows must win
    rerun = run_target(config, data_file("upsert_same_key_twice"))
    assert rerun.returncode == 0, rerun.stderr
    assert [(r["id"], r["byte_count"]) for r in rows("flows")] == [
        (1, 1000), (2, 200), (3, 3), (4, 4),
    ]  # fmt: skip
    raw = rows("flows_raw", order_by="_bqlite_seq")
    assert len(raw) == 13
    first_run, second_run = raw[:7], raw[7:]
    assert [r["byte_count"] for r in first_run] == [1, 2, 3, 11, 22, 4, 111]
    assert [r["byte_count"] for r in second_run] == [1, 2, 100, 3, 200, 1000]
    assert all(r["_bqlite_seq"] < 2**53 for r in raw)  # JSON loads need no quoted INT64


def test_the_replication_key_ranks_before_arrival_within_and_across_runs(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    config = target_config(**DEDUP)
    first = run_target(config, data_file("dedup_replication_key_order"))
    assert first.returncode == 0, first.stderr
    assert [(r["id"], r["name"]) for r in rows("hosts")] == [
        (1, "new"),  # updated 5 beats updated 3, though 3 arrived later
        (2, "same time, sent later"),  # a tie on the replication key: arrival decides
    ]
    # the next run's SCHEMA gives bookmark_properties as one string, as some taps do
    second = run_target(config, data_file("dedup_replication_key_order_next"))
    assert second.returncode == 0, second.stderr
    assert [(r["id"], r["name"]) for r in rows("hosts")] == [
        (1, "new"),
        (2, "same time, next run"),
    ]
    assert second.states == [{"bookmarks": {"hosts": {"replication_key_value": 5}}}] * 2


def test_a_new_column_appears_in_the_view(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    rows: Rows,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    result = run_target(target_config(**DEDUP), data_file("schema_adds_description"))
    assert result.returncode == 0, result.stderr
    assert [(r["id"], r["byte_count"], r["description"]) for r in rows("flows")] == [
        (1, 99, "first again"),
        (2, 20, None),
        (3, 30, "third"),
    ]
    view = bq_client.get_table(f"flows-local.{bq_dataset}.flows")
    assert [field.name for field in view.schema][-2:] == ["description", "_bqlite_seq"]
    assert "replaced view flows" in result.stderr
    assert result.states[-1] == {"bookmarks": {"flows": {"id": 3}}}
    rerun = run_target(target_config(**DEDUP), data_file("schema_adds_description"))
    assert rerun.returncode == 0, rerun.stderr
    assert "view flows" not in rerun.stderr  # the same columns: the view is left as it is


def test_stream_without_keys_views_every_row(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    config = target_config(**DEDUP)
    for _ in range(2):
        result = run_target(config, data_file("append_events"))
        assert result.returncode == 0, result.stderr
        assert result.states == [{"events": 3}] * 2
    assert sorted((r["name"], r["n"]) for r in rows("events", order_by="n")) == [
        ("a", 1), ("a", 1), ("a", 1), ("a", 1), ("b", 2), ("b", 2),
    ]  # fmt: skip
    assert len(rows("events_raw", order_by="n")) == 6


@pytest.mark.parametrize(
    ("key_type", "kind"),
    [
        ({"type": "number"}, "FLOAT64 NULLABLE"),
        ({"type": "object", "properties": {"a": {"type": "integer"}}}, "RECORD NULLABLE"),
        ({"type": "array", "items": {"type": "integer"}}, "INT64 REPEATED"),
        ({}, "JSON NULLABLE"),
    ],
)
def test_keys_the_view_cannot_partition_by_are_refused_before_any_table(
    target_config: Callable[..., Path], tables: Callable[[], list[str]], key_type: dict, kind: str
) -> None:
    lines = singer_lines(
        schema("things", {"k": key_type, "n": {"type": "integer"}}, ["k"]),
        record("things", {"k": 1, "n": 1}),
    )
    result = run_target(target_config(**DEDUP), lines)
    assert result.returncode != 0
    assert (
        f"stream 'things': key property 'k' maps to {kind}; the view needs keys BigQuery can "
        "partition by" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert result.states == []
    assert tables() == []


def test_a_replication_key_bigquery_cannot_order_by_is_refused(
    target_config: Callable[..., Path],
) -> None:
    lines = singer_lines(
        schema(
            "things",
            {"k": {"type": "integer"}, "at": {"type": "object", "properties": {}}},
            ["k"],
            bookmark_properties=["at"],
        ),
        record("things", {"k": 1, "at": {}}),
    )
    result = run_target(target_config(**DEDUP), lines)
    assert result.returncode != 0
    assert "bookmark property at maps to JSON NULLABLE, which BigQuery cannot order by" in (
        result.stderr
    )


def test_a_table_where_the_view_goes_is_refused_not_replaced(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    merged = run_target(target_config(), data_file("upsert_same_key_twice"))
    assert merged.returncode == 0, merged.stderr
    result = run_target(target_config(**DEDUP), data_file("upsert_same_key_twice"))
    assert result.returncode != 0
    assert ".flows is a TABLE, but load_method dedup_view makes it a view of flows_raw" in (
        result.stderr
    )
    assert result.states == []
    assert len(rows("flows")) == 3  # the merged table is untouched


def test_the_raw_table_is_clustered_on_the_key_unless_configured(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    assert run_target(target_config(**DEDUP), data_file("upsert_same_key_twice")).returncode == 0
    raw = bq_client.get_table(f"flows-local.{bq_dataset}.flows_raw")
    assert raw.clustering_fields == ["id"]
    config = target_config(
        partition_field="seen_at", cluster_fields=["day"], add_metadata_columns=True, **DEDUP
    )
    result = run_target(config, data_file("nested_objects_and_arrays"))
    assert result.returncode == 0, result.stderr
    hosts = bq_client.get_table(f"flows-local.{bq_dataset}.hosts_raw")
    assert hosts.time_partitioning.field == "seen_at"
    assert hosts.clustering_fields == ["day"]
    sql = (
        "SELECT id, _sdc_received_at IS NOT NULL AS received "
        f"FROM `flows-local.{bq_dataset}.hosts` ORDER BY id"
    )
    assert query(bq_client, sql) == [{"id": 1, "received": True}, {"id": 2, "received": True}]


@pytest.mark.parametrize("validate", [True, False], ids=["checked-blocks", "copied-unread"])
def test_batch_files_rank_by_arrival_like_records(
    tmp_path: Path, target_config: Callable[..., Path], rows: Rows, validate: bool
) -> None:
    batch_file = tmp_path / "people.jsonl"
    people = [(1, "a"), (2, "b"), (1, "a2"), (3, "c"), (2, "b2"), (1, "a3")]
    batch_file.write_text("".join(f'{{"id": {i}, "name": "{n}"}}\n' for i, n in people))
    properties = {"id": {"type": "integer"}, "name": {"type": "string"}}
    lines = singer_lines(
        schema("people", properties, ["id"]),
        {"type": "BATCH", "stream": "people", "encoding": {"format": "jsonl"},
         "manifest": [batch_file.as_uri()]},
        {"type": "STATE", "value": {"people": 6}},
    )  # fmt: skip
    result = run_target(target_config(validate_records=validate, **DEDUP), lines)
    assert result.returncode == 0, result.stderr
    assert [(r["id"], r["name"]) for r in rows("people")] == [(1, "a3"), (2, "b2"), (3, "c")]
    raw = rows("people_raw", order_by="_bqlite_seq")
    assert [r["name"] for r in raw] == [name for _, name in people]
    sequence = [r["_bqlite_seq"] for r in raw]
    assert sequence == list(range(sequence[0], sequence[0] + 6))
    assert 10**15 < sequence[0] < 2**53  # microseconds since 1970, not arrival numbers
    assert result.states == [{"people": 6}] * 2


def test_older_versions_leave_the_raw_table_and_the_view(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    config = target_config(**DEDUP)
    assert run_target(config, data_file("activate_version")).returncode == 0
    second = run_target(config, data_file("activate_version_next"))
    assert second.returncode == 0, second.stderr
    assert [(r["id"], r["byte_count"], r["_sdc_table_version"]) for r in rows("flows")] == [
        (2, 2222, 2),
        (4, 40, 2),
    ]
    assert {r["_sdc_table_version"] for r in rows("flows_raw")} == {2}
    assert second.states == [{"full": 2}]
