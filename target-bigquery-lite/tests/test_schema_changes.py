"""Schema evolution, nested objects and arrays, and changes that must fail clearly."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from google.cloud import bigquery

from tests.conftest import run_target

Rows = Callable[..., list[dict[str, Any]]]


def test_second_schema_adds_description(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    rows: Rows,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    result = run_target(target_config(), data_file("schema_adds_description"))
    assert result.returncode == 0, result.stderr
    assert [(r["id"], r["byte_count"], r["description"]) for r in rows("flows")] == [
        (1, 99, "first again"),
        (2, 20, None),
        (3, 30, "third"),
    ]
    table = bq_client.get_table(f"flows-local.{bq_dataset}.flows")
    modes = {field.name: field.mode for field in table.schema}
    assert modes["description"] == "NULLABLE"
    assert modes["id"] == "REQUIRED"
    assert result.states[-1] == {"bookmarks": {"flows": {"id": 3}}}


def test_description_added_on_a_later_run_keeps_old_rows(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    config = target_config()
    assert run_target(config, data_file("upsert_same_key_twice")).returncode == 0
    result = run_target(config, data_file("schema_adds_description"))
    assert result.returncode == 0, result.stderr
    got = {r["id"]: (r["byte_count"], r["description"]) for r in rows("flows")}
    assert got == {1: (99, "first again"), 2: (20, None), 3: (30, "third")}


def test_nested_objects_and_arrays_load_and_query_back(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    result = run_target(target_config(), data_file("nested_objects_and_arrays"))
    assert result.returncode == 0, result.stderr
    table = f"`flows-local.{bq_dataset}.hosts`"
    schema = {f.name: (f.field_type, f.mode) for f in bq_client.get_table(table.strip("`")).schema}
    assert schema == {
        "id": ("INTEGER", "REQUIRED"),
        "host": ("RECORD", "NULLABLE"),
        "ports": ("INTEGER", "REPEATED"),
        "tags": ("STRING", "REPEATED"),
        "conns": ("RECORD", "REPEATED"),
        "attrs": ("JSON", "NULLABLE"),
        "seen_at": ("TIMESTAMP", "NULLABLE"),
        "day": ("DATE", "NULLABLE"),
        "ratio": ("FLOAT", "NULLABLE"),
        "price": ("NUMERIC", "NULLABLE"),
        "ok": ("BOOLEAN", "NULLABLE"),
    }
    sql = f"""
        SELECT id, host.name AS name, host.location.rack AS rack, ports, tags,
               ARRAY(SELECT c.peer FROM UNNEST(conns) AS c) AS peers,
               (SELECT SUM(c.bytes) FROM UNNEST(conns) AS c) AS total,
               INT64(attrs.k[1]) AS k1, BOOL(attrs.deep.x) AS deep,
               seen_at, day, ratio, price, ok
        FROM {table} ORDER BY id"""
    got = [dict(row.items()) for row in bq_client.query(sql).result()]
    utc = datetime.UTC
    assert got == [
        {
            "id": 1, "name": "h1", "rack": 7, "ports": [22, 443], "tags": ["a", "b"],
            "peers": ["h2", "h3"], "total": 30, "k1": 2, "deep": True,
            "seen_at": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=utc),
            "day": datetime.date(2024, 1, 2), "ratio": 0.5, "price": Decimal("12.34"), "ok": True,
        },
        {
            "id": 2, "name": None, "rack": None, "ports": [], "tags": [], "peers": [],
            "total": None, "k1": None, "deep": None,
            "seen_at": datetime.datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=utc),
            "day": datetime.date(2024, 2, 29), "ratio": 0.001, "price": Decimal("0.1"), "ok": False,
        },
    ]  # fmt: skip


def test_incompatible_type_change_fails_naming_the_column(
    target_config: Callable[..., Path], data_file: Callable[[str], Path], rows: Rows
) -> None:
    result = run_target(target_config(), data_file("schema_incompatible_change"))
    assert result.returncode == 1
    assert "incompatible schema change for table flows-local." in result.stderr
    assert (
        "column byte_count is INT64 NULLABLE in BigQuery but the stream's SCHEMA now maps "
        "it to STRING NULLABLE" in result.stderr
    )
    assert "Traceback" not in result.stderr
    # the record before the change was committed first, so its STATE went out; none after
    assert [r["id"] for r in rows("flows")] == [1]
    assert result.states == [{"b": 1}]


def test_required_column_is_relaxed_when_a_schema_makes_it_optional(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    tmp_path: Path,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    config = target_config()
    assert run_target(config, data_file("upsert_same_key_twice")).returncode == 0
    relaxed = (
        data_file("upsert_same_key_twice")
        .read_text()
        .replace('"required": ["id", "time"]', '"required": ["id"]')
    )
    (tmp_path / "relaxed.singer").write_text(relaxed)
    result = run_target(config, tmp_path / "relaxed.singer")
    assert result.returncode == 0, result.stderr
    assert "relax time to NULLABLE" in result.stderr
    modes = {f.name: f.mode for f in bq_client.get_table(f"flows-local.{bq_dataset}.flows").schema}
    assert (modes["id"], modes["time"]) == ("REQUIRED", "NULLABLE")


def test_property_names_colliding_after_sanitizing_fail(
    target_config: Callable[..., Path], data_file: Callable[[str], Path]
) -> None:
    result = run_target(target_config(), data_file("column_name_collision"))
    assert result.returncode == 1
    assert (
        "stream 'clash': properties 'a b' and 'a.b' both become BigQuery column 'a_b'"
        in result.stderr
    )


def test_partitioning_clustering_and_metadata_columns(
    target_config: Callable[..., Path],
    data_file: Callable[[str], Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    config = target_config(
        partition_field="seen_at", cluster_fields=["id"], add_metadata_columns=True
    )
    result = run_target(config, data_file("nested_objects_and_arrays"))
    assert result.returncode == 0, result.stderr
    table = bq_client.get_table(f"flows-local.{bq_dataset}.hosts")
    assert table.time_partitioning.field == "seen_at"
    assert table.clustering_fields == ["id"]
    sql = (
        "SELECT id, _sdc_extracted_at IS NULL AS no_extracted, "
        "_sdc_received_at IS NOT NULL AS received "
        f"FROM `flows-local.{bq_dataset}.hosts` ORDER BY id"
    )
    got = [dict(row.items()) for row in bq_client.query(sql).result()]
    assert got == [
        {"id": 1, "no_extracted": True, "received": True},
        {"id": 2, "no_extracted": True, "received": True},
    ]


def test_partition_field_of_the_wrong_type_fails(
    target_config: Callable[..., Path], data_file: Callable[[str], Path]
) -> None:
    result = run_target(
        target_config(partition_field="ratio"), data_file("nested_objects_and_arrays")
    )
    assert result.returncode == 1
    assert (
        "partition_field ratio of stream 'hosts' is FLOAT64 NULLABLE; BigQuery partitions on a "
        "TIMESTAMP, DATE or DATETIME column (time-unit) or an INT64 column (integer range) only"
        in result.stderr
    )
