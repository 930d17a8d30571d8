"""Partitioning of every kind BigQuery allows, the pruned MERGE and the cost report.

Each test runs the real target against the strict BigQuery (ZetaSQL analyzes every
statement). Pruning is shown on the MERGE statements themselves, read back by their job
ids from the cost report in the log: their constant filter, and the rows and bytes of the
partitions it admits (`dev_services.merge_cost`), against the whole table's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dev_services.merge_cost import admitted, target_filter
from dev_services.sql_catalog import TableRef
from dev_services.sql_checks import check_sql
from dev_services.zetasql_engine import engine
from google.cloud import bigquery

from target_bigquery_lite.load_methods.merge import build_merge_sql
from target_bigquery_lite.load_methods.overwrite import build_replace_sql
from target_bigquery_lite.partitions import (
    Bounds,
    IntegerRange,
    all_partitions_sql,
    target_filter_sql,
)
from target_bigquery_lite.versions import build_delete_old_versions_sql
from tests.conftest import run_target, singer_lines

RANGE = {"start": 0, "end": 1_000, "interval": 100}
FLOWS_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "time": {"type": "integer"}, "v": {"type": "string"}},
    "required": ["id", "time"],
}
TIME_FORMATS = {
    "TIMESTAMP": ({"type": "string", "format": "date-time"}, "2024-03-0{d}T1{h}:30:00Z"),
    "DATE": ({"type": "string", "format": "date"}, "2024-03-0{d}"),
}
SPANS = {  # (kind, granularity) -> the filter's bounds: rows 03-01 10:30 to 03-03 12:30
    ("TIMESTAMP", "HOUR"): ("2024-03-01 10:00:00", "2024-03-03 12:59:59.999999"),
    ("TIMESTAMP", "DAY"): ("2024-03-01 00:00:00", "2024-03-03 23:59:59.999999"),
    ("TIMESTAMP", "MONTH"): ("2024-03-01 00:00:00", "2024-03-31 23:59:59.999999"),
    ("TIMESTAMP", "YEAR"): ("2024-01-01 00:00:00", "2024-12-31 23:59:59.999999"),
    ("DATE", "DAY"): ("2024-03-01", "2024-03-03"),
    ("DATE", "MONTH"): ("2024-03-01", "2024-03-31"),
    ("DATE", "YEAR"): ("2024-01-01", "2024-12-31"),
}
MERGE_JOB = re.compile(r"job (bqlite_\S+_merge_\d+): MERGE")


def flows(rows: list[tuple[int, int | None]], stream: str = "flows") -> bytes:
    """SCHEMA + RECORDs of (id, time) rows, `v` telling the run apart."""
    schema = {"type": "SCHEMA", "stream": stream, "schema": FLOWS_SCHEMA, "key_properties": ["id"]}
    records = [
        {"type": "RECORD", "stream": stream, "record": {"id": i, "time": t, "v": f"v{i}-{t}"}}
        for i, t in rows
    ]
    return singer_lines(schema, *records)


def merges(client: bigquery.Client, dataset: str, stderr: str) -> list[str]:
    """The statements of the MERGE jobs a run logged, in order."""
    location = client.get_dataset(dataset).location
    return [client.get_job(job, location=location).query for job in MERGE_JOB.findall(stderr)]


@pytest.mark.parametrize("granularity", ["HOUR", "DAY", "MONTH", "YEAR"])
@pytest.mark.parametrize("kind", ["TIMESTAMP", "DATE"])
def test_time_unit_partitioning_each_granularity(
    target_config: Callable[..., Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
    kind: str,
    granularity: str,
) -> None:
    schema, pattern = TIME_FORMATS[kind]
    message = {
        "type": "SCHEMA",
        "stream": "events",
        "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "at": schema}},
        "key_properties": ["id"],
    }
    rows = [{"id": n, "at": pattern.format(d=1 + n % 3, h=n % 5)} for n in range(6)]
    records = [{"type": "RECORD", "stream": "events", "record": row} for row in rows]
    config = target_config(
        partition_field="at", partition_granularity=granularity, merge_partition_filter=True
    )
    result = run_target(config, singer_lines(message, *records))
    if kind == "DATE" and granularity == "HOUR":
        assert result.returncode == 1
        assert (
            "partition_field at of stream 'events' is DATE, which BigQuery cannot partition "
            "by HOUR" in result.stderr
        )
        return
    assert result.returncode == 0, result.stderr
    table = bq_client.get_table(f"flows-local.{bq_dataset}.events")
    assert (table.time_partitioning.field, table.time_partitioning.type_) == ("at", granularity)
    (sql,) = merges(bq_client, bq_dataset, result.stderr)
    low, high = SPANS[kind, granularity]
    zone = "+00:00" if kind == "TIMESTAMP" else ""
    assert target_filter(sql) == (
        f"_TABLE_target.`at` BETWEEN {kind} '{low}{zone}' AND {kind} '{high}{zone}'"
    )
    got = bq_client.query(f"SELECT COUNT(*) AS n FROM `flows-local.{bq_dataset}.events`").result()
    assert next(iter(got))["n"] == 6


def test_integer_range_merge_prunes_and_keeps_rows_exact(
    target_config: Callable[..., Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
    rows: Callable[..., list[dict[str, Any]]],
) -> None:
    config = target_config(
        partition_field="time",
        partition_range=RANGE,
        cluster_fields=["id"],
        merge_partition_filter=True,
        batch_max_rows=50,
    )
    history = [(i, i * 5) for i in range(200)]  # time 0..995: every partition
    first = run_target(config, flows(history))
    assert first.returncode == 0, first.stderr
    table = bq_client.get_table(f"flows-local.{bq_dataset}.flows")
    assert table.range_partitioning.field == "time"
    assert (table.range_partitioning.range_.interval, table.clustering_fields) == (100, ["id"])
    # An increment: a re-sent boundary row (same time), an update, new rows at the end.
    increment = [(199, 995), (198, 990), (200, 996), (201, 999)]
    second = run_target(config, flows(increment))
    assert second.returncode == 0, second.stderr
    (sql,) = merges(bq_client, bq_dataset, second.stderr)
    assert target_filter(sql) == "_TABLE_target.`time` BETWEEN 900 AND 999"
    estimate = admitted(bq_client, f"flows-local.{bq_dataset}.flows", sql)
    assert estimate.table_rows == 202
    assert estimate.rows == 22  # partition [900, 1000) only: times 900..995, 996, 999
    assert estimate.bytes < estimate.table_bytes / 5
    got = {row["id"]: (row["time"], row["v"]) for row in rows("flows")}
    expected = {i: (t, f"v{i}-{t}") for i, t in history + increment}
    assert got == expected
    assert re.search(r"cost flows: 2 job\(s\) \(1 LOAD, 1 MERGE\), .*emulator", second.stderr)


def test_unfiltered_merge_admits_the_whole_table(
    target_config: Callable[..., Path], bq_client: bigquery.Client, bq_dataset: str
) -> None:
    config = target_config(partition_field="time", partition_range=RANGE)
    assert run_target(config, flows([(i, i * 5) for i in range(100)])).returncode == 0
    second = run_target(config, flows([(100, 999)]))
    assert second.returncode == 0, second.stderr
    (sql,) = merges(bq_client, bq_dataset, second.stderr)
    assert target_filter(sql) is None
    estimate = admitted(bq_client, f"flows-local.{bq_dataset}.flows", sql)
    assert (estimate.rows, estimate.bytes) == (estimate.table_rows, estimate.table_bytes)


def test_values_outside_the_range_and_null_partition_values(
    target_config: Callable[..., Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
    rows: Callable[..., list[dict[str, Any]]],
) -> None:
    config = target_config(
        partition_field="time", partition_range=RANGE, merge_partition_filter=True
    )
    properties = {**FLOWS_SCHEMA["properties"], "time": {"type": ["integer", "null"]}}
    schema = {"type": "object", "properties": properties, "required": ["id"]}
    message = {"type": "SCHEMA", "stream": "flows", "schema": schema, "key_properties": ["id"]}
    data = [(1, 5), (2, 5_000), (3, None), (4, -7)]
    records = [
        {"type": "RECORD", "stream": "flows", "record": {"id": i, "time": t, "v": "a"}}
        for i, t in data
    ]
    for _ in range(2):  # the second run matches every row, __UNPARTITIONED__ and __NULL__ too
        result = run_target(config, singer_lines(message, *records))
        assert result.returncode == 0, result.stderr
        assert "reach outside partition_range [0, 1000)" in result.stderr
        assert "__UNPARTITIONED__" in result.stderr
    (sql,) = merges(bq_client, bq_dataset, result.stderr)
    assert target_filter(sql) == (
        "(_TABLE_target.`time` BETWEEN -7 AND 5000 OR _TABLE_target.`time` IS NULL)"
    )
    assert [(row["id"], row["time"]) for row in rows("flows")] == data


@pytest.mark.parametrize(
    ("partition_range", "message"),
    [
        ({"start": 0, "end": 10_001, "interval": 1}, "makes 10001 partitions; BigQuery allows "
         "10000: use an interval of at least 2"),
        ({"start": 5, "end": 5, "interval": 1}, "needs start < end and interval > 0"),
        ({"start": 0, "end": 10}, 'must be {"start": ..., "end": ..., "interval": ...}'),
        ({"start": 0, "end": 1.5, "interval": 1}, "values must be INT64 integers"),
    ],
)  # fmt: skip
def test_bad_partition_ranges_fail_before_reading(
    target_config: Callable[..., Path], partition_range: dict[str, Any], message: str
) -> None:
    config = target_config(partition_field="time", partition_range=partition_range)
    result = run_target(config, flows([(1, 1)]))
    assert result.returncode != 0
    assert message in result.stderr


def test_a_range_of_exactly_10000_partitions_is_accepted(
    target_config: Callable[..., Path], bq_client: bigquery.Client, bq_dataset: str
) -> None:
    # The flows default: 43,200 s partitions over ten years of LANL seconds.
    flows_range = {"start": 0, "end": 432_000_000, "interval": 43_200}
    config = target_config(partition_field="time", partition_range=flows_range)
    result = run_target(config, flows([(1, 0), (2, 431_999_999)]))
    assert result.returncode == 0, result.stderr
    table = bq_client.get_table(f"flows-local.{bq_dataset}.flows")
    assert int(table.range_partitioning.range_.end) == 432_000_000


def test_int64_without_a_range_and_a_range_on_a_time_column_fail_naming_the_field(
    target_config: Callable[..., Path], data_file: Callable[[str], Path]
) -> None:
    result = run_target(target_config(partition_field="time"), flows([(1, 1)]))
    assert result.returncode == 1
    assert "partition_field time of stream 'flows' is INT64: integer-range partitioning " in (
        result.stderr
    )
    result = run_target(
        target_config(partition_field="seen_at", partition_range=RANGE),
        data_file("nested_objects_and_arrays"),
    )
    assert result.returncode == 1
    assert "partition_field seen_at of stream 'hosts' is TIMESTAMP: 'partition_range' " in (
        result.stderr
    )


def test_an_existing_table_keeps_its_layout_and_filters_on_it(
    target_config: Callable[..., Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
    rows: Callable[..., list[dict[str, Any]]],
) -> None:
    first = run_target(
        target_config(partition_field="time", partition_range=RANGE), flows([(1, 5)])
    )
    assert first.returncode == 0, first.stderr
    other = {"start": 0, "end": 100_000, "interval": 1_000}
    config = target_config(
        partition_field="time", partition_range=other, merge_partition_filter=True
    )
    second = run_target(config, flows([(1, 7), (2, 8)]))
    assert second.returncode == 0, second.stderr
    assert (
        "exists with layout time RANGE(0, 1000, 100), not the configured time RANGE(0, 100000, "
        "1000): it keeps its own" in second.stderr
    )
    table = bq_client.get_table(f"flows-local.{bq_dataset}.flows")
    assert int(table.range_partitioning.range_.interval) == 100
    (sql,) = merges(bq_client, bq_dataset, second.stderr)
    assert target_filter(sql) == "_TABLE_target.`time` BETWEEN 0 AND 99"  # the table's 100
    assert [(row["id"], row["time"]) for row in rows("flows")] == [(1, 7), (2, 8)]


@pytest.mark.parametrize("validate", [True, False])
def test_batch_files_staged_unread_get_their_bounds_from_the_staging_table(
    tmp_path: Path,
    target_config: Callable[..., Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
    rows: Callable[..., list[dict[str, Any]]],
    validate: bool,
) -> None:
    config = target_config(
        partition_field="time",
        partition_range=RANGE,
        merge_partition_filter=True,
        validate_records=validate,
    )
    assert run_target(config, flows([(i, i * 5) for i in range(200)])).returncode == 0
    batch_file = tmp_path / "increment.jsonl"
    batch_file.write_text("".join(f'{{"id": {i}, "time": {t}, "v": "b"}}\n' for i, t in
                                  [(1, 5), (300, 420), (301, 470)]))  # fmt: skip
    schema = {"type": "SCHEMA", "stream": "flows", "schema": FLOWS_SCHEMA, "key_properties": ["id"]}
    manifest = {"type": "BATCH", "stream": "flows", "encoding": {"format": "jsonl"},
                "manifest": [batch_file.as_uri()]}  # fmt: skip
    result = run_target(config, singer_lines(schema, manifest))
    assert result.returncode == 0, result.stderr
    assert re.search(r"job bqlite_\S+_bounds_0: SELECT", result.stderr), result.stderr
    (sql,) = merges(bq_client, bq_dataset, result.stderr)
    assert target_filter(sql) == "_TABLE_target.`time` BETWEEN 0 AND 499"
    got = {row["id"]: (row["time"], row["v"]) for row in rows("flows")}
    assert len(got) == 202
    assert (got[1], got[300], got[301], got[2]) == ((5, "b"), (420, "b"), (470, "b"), (10, "v2-10"))


def test_merge_update_false_only_inserts_new_keys(
    target_config: Callable[..., Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
    rows: Callable[..., list[dict[str, Any]]],
) -> None:
    config = target_config(
        partition_field="time", partition_range=RANGE, merge_partition_filter=True,
        merge_update=False,
    )  # fmt: skip
    schema = {"type": "SCHEMA", "stream": "flows", "schema": FLOWS_SCHEMA, "key_properties": ["id"]}

    def run(*records: tuple[int, int, str]) -> str:
        messages = [
            {"type": "RECORD", "stream": "flows", "record": {"id": i, "time": t, "v": v}}
            for i, t, v in records
        ]
        result = run_target(config, singer_lines(schema, *messages))
        assert result.returncode == 0, result.stderr
        return result.stderr

    run((1, 5, "first"), (2, 6, "first"), (2, 6, "latest in the batch"))
    stderr = run((1, 5, "second"), (3, 7, "second"))
    (sql,) = merges(bq_client, bq_dataset, stderr)
    assert "WHEN MATCHED" not in sql
    assert "WHEN NOT MATCHED THEN INSERT" in sql
    got = [(row["id"], row["v"]) for row in rows("flows")]
    assert got == [(1, "first"), (2, "latest in the batch"), (3, "second")]


def test_require_partition_filter_makes_tables_the_front_refuses_unfiltered_queries_on(
    target_config: Callable[..., Path], bq_client: bigquery.Client, bq_dataset: str,
    strict_bigquery: Any,
) -> None:  # fmt: skip
    config = target_config(
        partition_field="time", partition_range=RANGE, require_partition_filter=True,
        load_method="append",
    )  # fmt: skip
    assert run_target(config, flows([(1, 5), (2, 150)])).returncode == 0
    table_id = f"flows-local.{bq_dataset}.flows"
    assert bq_client.get_table(table_id).require_partition_filter
    with pytest.raises(Exception, match="without a filter over column"):
        bq_client.query(f"SELECT COUNT(*) FROM `{table_id}`").result()
    assert len(strict_bigquery.claim("partition-filter")) == 1
    # (The emulator cannot run even a filtered query on such a table: its own check expects
    # _PARTITIONTIME for integer-range partitioning. Statements are analyzed below instead.)


REQUIRED_TABLE = {
    "schema": {"fields": [{"name": "id", "type": "INTEGER"}, {"name": "time", "type": "INTEGER"},
                          {"name": "v", "type": "STRING"}, {"name": "_sdc_table_version",
                          "type": "INTEGER"}, {"name": "_bqlite_run", "type": "STRING"}]},
    "rangePartitioning": {"field": "time", "range": {"start": "0", "end": "1000",
                                                     "interval": "100"}},
    "requirePartitionFilter": True,
}  # fmt: skip


def test_every_statement_on_a_table_requiring_a_partition_filter_carries_one() -> None:
    """ZetaSQL and the front's partition check, on each statement the target sends.

    The emulator itself cannot run them on such a table (its own check reads only WHERE
    clauses and knows only time partitioning), so they are analyzed, not executed.
    """
    target, staging = "`p`.`d`.`flows`", "`p`.`d`.`staging`"

    def resource(ref: TableRef) -> dict[str, Any]:
        if ref.table == "flows":
            return REQUIRED_TABLE
        fields = [*REQUIRED_TABLE["schema"]["fields"], {"name": "_bqlite_seq", "type": "INTEGER"}]
        return {"schema": {"fields": fields}}

    column = "_TABLE_target.`time`"
    bounds = Bounds("time", "INT64")
    bounds.see({"time": 120})
    everything = all_partitions_sql("`time`", "INT64")
    statements = {
        "pruned MERGE": build_merge_sql(
            target, staging, ["id"], ["id", "time", "v"],
            target_filter_sql(column, "INT64", bounds, None, IntegerRange(0, 1_000, 100)),
        ),
        "whole-table MERGE": build_merge_sql(
            target, staging, ["id"], ["id", "time", "v"], all_partitions_sql(column, "INT64")
        ),
        "version clean-up": build_delete_old_versions_sql(target, partition_filter=everything),
        "overwrite": build_replace_sql(target, staging, ["id", "time", "v"], everything),
    }  # fmt: skip
    parameters = [
        {"name": "version", "parameterType": {"type": "INT64"}, "parameterValue": {"value": "1"}},
        {"name": "run", "parameterType": {"type": "STRING"}, "parameterValue": {"value": "r"}},
    ]
    for what, sql in statements.items():
        report = check_sql(
            engine(), sql, parameters, project="p", default_dataset=None, fetch_table=resource
        )
        assert (what, report.errors, report.partition_errors) == (what, [], [])
    unfiltered = build_merge_sql(target, staging, ["id"], ["id", "time", "v"])
    report = check_sql(engine(), unfiltered, [], project="p", default_dataset=None,
                       fetch_table=resource)  # fmt: skip
    assert report.partition_errors
