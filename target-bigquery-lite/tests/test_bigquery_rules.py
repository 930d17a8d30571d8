"""BigQuery's rules the target breaks (issue 13, item 3), one focused test per fault.

Each test runs the real target against the strict BigQuery and fails until the fault is
fixed; names start with the bullet they belong to (`b1_` is the first bullet of item 3,
...). The strict front fails a test at teardown for every request BigQuery would refuse,
so "the run succeeds" here also means "BigQuery would have accepted every request".

Only the `b1_` tests run the target with the README's least privilege; the others give it
BigQuery Data Editor on the project (`bigquery.datasets.create` too), so that b1's fault
(every run creates the dataset) does not hide theirs.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from dev_services.bigquery_proxy import BigQueryProxy, Rule
from dev_services.strict_bigquery import create_dataset
from dev_services.strict_state import ADMIN, LEAST_PRIVILEGE, Principal
from google.cloud import bigquery

from tests.conftest import TARGET, run_target, singer_lines, target_env

PROJECT = "flows-local"
PROJECT_DATA_EDITOR = Principal(
    "BigQuery Data Editor on the project + Job User",
    LEAST_PRIVILEGE.permissions | {"bigquery.datasets.create"},
)


@pytest.fixture(autouse=True)
def _dataset_rights(request, strict_bigquery):
    """Least privilege for b1's tests; the project-level Data Editor for the others."""
    if request.node.name.startswith("test_b1_"):
        yield
        return
    with strict_bigquery.principal(PROJECT_DATA_EDITOR):
        yield


def schema(stream: str, properties: dict, keys: list[str] | None = None) -> dict:
    body = {"type": "object", "properties": properties}
    return {"type": "SCHEMA", "stream": stream, "schema": body, "key_properties": keys or []}


def record(stream: str, value: dict, **extra) -> dict:
    return {"type": "RECORD", "stream": stream, "record": value, **extra}


def start_target(config) -> subprocess.Popen[bytes]:
    pipe = subprocess.PIPE
    args = [*TARGET, "--config", str(config)]
    return subprocess.Popen(args, stdin=pipe, stdout=pipe, stderr=pipe, env=target_env())


ID = {"id": {"type": "integer"}}
EVENTS = singer_lines(
    schema("events", {**ID, "name": {"type": "string"}}, ["id"]),
    record("events", {"id": 1, "name": "a"}),
    {"type": "STATE", "value": {"events": 1}},
)


# --- b1: the dataset ---
def test_b1_a_data_editor_can_run_into_an_existing_dataset(target_config, rows):
    result = run_target(target_config(), EVENTS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [row["name"] for row in rows("events")] == ["a"]


def test_b1_a_location_unlike_the_datasets_is_a_clear_error_at_start_up(
    target_config, bq_dataset, tables
):
    result = run_target(target_config(location="US"), EVENTS)
    assert result.returncode != 0
    assert "europe-west2" in result.stderr
    assert bq_dataset in result.stderr
    assert "Traceback" not in result.stderr
    assert result.states == []
    assert tables() == []


def test_b1_a_new_dataset_without_location_says_where_it_was_created(
    target_config, bq_client, strict_bigquery, tmp_path
):
    name = f"b1_new_{int(time.time() * 1000)}"
    with strict_bigquery.principal(ADMIN):
        result = run_target(target_config(dataset=name), EVENTS)
    try:
        assert result.returncode == 0, result.stderr[-2000:]
        location = bq_client.get_dataset(name).location
        assert f"created dataset {name}" in result.stderr
        assert location in result.stderr
    finally:
        bq_client.delete_dataset(name, delete_contents=True, not_found_ok=True)


# --- b2: overwrite stages with the final table's types ---
def test_b2_overwrite_after_a_held_widening_to_timestamp(target_config, rows):
    config = target_config(load_method="overwrite")
    first = singer_lines(
        schema("snap", {**ID, "at": {"type": "string"}}), record("snap", {"id": 1, "at": "x"})
    )
    assert run_target(config, first).returncode == 0
    when = {"type": "string", "format": "date-time"}
    second = singer_lines(
        schema("snap", {**ID, "at": when}), record("snap", {"id": 2, "at": "2024-01-01T00:00:00Z"})
    )
    result = run_target(config, second)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [row["id"] for row in rows("snap")] == [2]


def test_b2_overwrite_keeps_record_sub_fields_in_place_whatever_their_order(target_config, rows):
    config = target_config(load_method="overwrite")
    ab = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    ba = {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "string"}}}
    first = singer_lines(schema("snap", {**ID, "r": ab}), record("snap", {"id": 1, "r": {}}))
    assert run_target(config, first).returncode == 0
    second = singer_lines(
        schema("snap", {**ID, "r": ba}), record("snap", {"id": 2, "r": {"a": "A", "b": "B"}})
    )
    result = run_target(config, second)
    assert result.returncode == 0, result.stderr[-2000:]
    assert rows("snap")[0]["r"] == {"a": "A", "b": "B"}


# --- b3: arrays with nullable items ---
def test_b3_null_array_elements_never_fail_the_load(target_config, rows):
    tags = {"type": "array", "items": {"type": ["null", "string"]}}
    lines = singer_lines(
        schema("tagged", {**ID, "tags": tags}, ["id"]),
        record("tagged", {"id": 1, "tags": ["a", None, "b"]}),
    )
    result = run_target(target_config(), lines)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [row["id"] for row in rows("tagged")] == [1]


# --- b4: the 409 path ---
def lost_first_load(bigquery_emulator) -> BigQueryProxy:
    """A proxy that forwards the first upload's last chunk (the job is created) but answers 503.

    The target's retry sends the same job id, and BigQuery answers 409: the job exists.
    """
    rule = Rule(
        "PUT",
        r"/upload/bigquery/v2/projects/.*/jobs",
        action="lose",
        status=503,
        reason="backendError",
        message="response lost after the job was created",
    )
    return BigQueryProxy(bigquery_emulator.url, [rule])


def test_b4a_the_409_path_looks_the_job_up_in_its_location(bigquery_emulator, target_config, rows):
    bigquery_emulator.state.not_found_after_conflict = False
    try:
        with lost_first_load(bigquery_emulator) as proxy:
            result = run_target(target_config(api_endpoint=proxy.url, max_retries=3), EVENTS)
            assert any(call.status == 409 for call in proxy.requests), "no 409 was provoked"
    finally:
        bigquery_emulator.state.not_found_after_conflict = True
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(rows("events")) == 1


def test_b4b_a_404_right_after_a_409_is_retried(
    bigquery_emulator, target_config, bq_client, tmp_path
):
    us = f"b4_us_{int(time.time() * 1000)}"
    create_dataset(bigquery_emulator.url, us, location="US")  # no location needed to look up
    try:
        with lost_first_load(bigquery_emulator) as proxy:
            result = run_target(
                target_config(api_endpoint=proxy.url, dataset=us, max_retries=3), EVENTS
            )
            assert any(call.status == 409 for call in proxy.requests), "no 409 was provoked"
        assert result.returncode == 0, result.stderr[-2000:]
        assert bq_client.get_table(f"{PROJECT}.{us}.events").num_rows == 1
    finally:
        bq_client.delete_dataset(us, delete_contents=True, not_found_ok=True)


# --- b5: schema updates ---
def test_b5a_a_schema_update_keeps_descriptions_and_parameterized_types(
    target_config, bq_client, bq_dataset
):
    table = bigquery.Table(
        f"{PROJECT}.{bq_dataset}.events",
        schema=[
            bigquery.SchemaField("id", "INT64", description="the key"),
            bigquery.SchemaField("name", "STRING", max_length=10, description="short name"),
        ],
    )
    bq_client.create_table(table)
    lines = singer_lines(
        schema("events", {**ID, "name": {"type": "string"}, "extra": {"type": "integer"}}, ["id"]),
        record("events", {"id": 1, "name": "a", "extra": 2}),
    )
    result = run_target(target_config(), lines)
    assert result.returncode == 0, result.stderr[-2000:]
    fields = {f.name: f for f in bq_client.get_table(table.reference).schema}
    assert fields["id"].description == "the key"
    assert (fields["name"].description, fields["name"].max_length) == ("short name", 10)
    assert "extra" in fields


def test_b5b_a_concurrent_schema_update_is_retried_not_fatal(
    bigquery_emulator, target_config, bq_client, bq_dataset, tmp_path
):
    table_id = f"{PROJECT}.{bq_dataset}.events"
    bq_client.create_table(bigquery.Table(table_id, schema=[bigquery.SchemaField("id", "INT64")]))
    lines = singer_lines(
        schema("events", {**ID, "name": {"type": "string"}}, ["id"]),
        record("events", {"id": 1, "name": "a"}),
    )
    patch = Rule("PATCH", rf"/datasets/{bq_dataset}/tables/events", action="hold")
    with BigQueryProxy(bigquery_emulator.url, [patch]) as proxy:
        config = target_config(api_endpoint=proxy.url, max_retries=3)
        run = start_target(config)
        try:
            run.stdin.write(lines)
            run.stdin.close()
            assert patch.matched.wait(120), "the target never updated the schema"
            other = bq_client.get_table(table_id)  # another worker's update lands first
            other.description = "updated by another worker"
            bq_client.update_table(other, ["description"])
            patch.release()
            run.stdin = None  # closed above: communicate() must not flush it
            _, stderr = run.communicate(timeout=120)
        finally:
            run.kill()
            run.wait()
    assert run.returncode == 0, stderr.decode()[-2000:]
    assert "name" in {f.name for f in bq_client.get_table(table_id).schema}


# --- b6: request timeouts ---
def test_b6_a_stalled_job_poll_does_not_hang_the_target(bigquery_emulator, target_config, rows):
    stall = Rule("GET", r"/bigquery/v2/projects/.*/(jobs|queries)/bqlite_", action="hold")
    with BigQueryProxy(bigquery_emulator.url, [stall]) as proxy:
        config = target_config(api_endpoint=proxy.url, max_retries=3)
        run = start_target(config)
        try:
            _, stderr = run.communicate(EVENTS, timeout=150)  # held for ever: only a timeout helps
        finally:
            run.kill()
            run.wait()
    assert stall.matched.is_set(), "the target never polled a job"
    assert run.returncode == 0, stderr.decode()[-2000:]
    assert len(rows("events")) == 1


# --- b7: large integers ---
def test_b7_integers_beyond_2_53_reach_bigquery_exactly(target_config, bq_client, bq_dataset):
    big = 2**53 + 1
    lines = singer_lines(
        schema("events", {**ID, "n": {"type": "integer"}}, ["id"]),
        record("events", {"id": 1, "n": big}),
    )
    result = run_target(target_config(), lines)
    assert result.returncode == 0, result.stderr[-2000:]
    sql = f"SELECT CAST(n AS STRING) AS n FROM `{PROJECT}.{bq_dataset}.events`"
    assert [row["n"] for row in bq_client.query(sql).result()] == [str(big)]


# --- b8: refused before the load, naming stream, record and field ---
WHEN = {"type": "string", "format": "date-time"}
DAY = {"type": "string", "format": "date"}
BAD_VALUES = {
    "leap second": ({"at": WHEN}, {"at": "2016-12-31T23:59:60Z"}, {}, "at"),
    "garbage after a date-time": ({"at": WHEN}, {"at": "2024-01-01garbage"}, {}, "at"),
    "impossible date": ({"day": DAY}, {"day": "2024-02-30"}, {}, "day"),
    "non-integer version": ({}, {}, {"version": 1.5}, "version"),
    "bad time_extracted": ({}, {}, {"time_extracted": "yesterday"}, "time_extracted"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_b8_a_value_bigquery_refuses_is_refused_before_the_load(target_config, tables, case):
    properties, value, extra, field = BAD_VALUES[case]
    lines = singer_lines(
        schema("events", {**ID, **properties}, ["id"]),
        record("events", {"id": 1}),
        record("events", {"id": 2, **value}, **extra),
    )
    result = run_target(target_config(add_metadata_columns=True), lines)
    assert result.returncode != 0
    assert "events" in result.stderr
    assert field in result.stderr
    assert "record 2" in result.stderr or "line 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_b8_a_number_beyond_float64_is_refused_not_staged_as_null(target_config):
    lines = (
        singer_lines(schema("events", {**ID, "x": {"type": "number"}}, ["id"]))
        + b'{"type": "RECORD", "stream": "events", "record": {"id": 1, "x": 1e400}}\n'
    )
    result = run_target(target_config(), lines)
    assert result.returncode != 0
    assert "events" in result.stderr
    assert "'x'" in result.stderr or " x" in result.stderr
    assert "line 2" in result.stderr


# --- b9: table operations per day ---
@pytest.mark.parametrize("method", ["append", "merge", "overwrite"])
def test_b9_batches_grow_so_a_run_stays_within_the_table_quota(
    target_config, strict_bigquery, bq_dataset, rows, method
):
    lines = singer_lines(
        schema("events", {**ID}, ["id"]),
        *(record("events", {"id": i}) for i in range(40)),
    )
    config = target_config(load_method=method, batch_max_rows=1, max_table_operations=20)
    result = run_target(config, lines)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(rows("events")) == 40
    assert "batches grow to 8 rows" in result.stderr
    destination = "events" if method != "overwrite" else None
    if destination:  # 2 batches of 1 row, 2 of 2, 2 of 4, then batches of 8: not 40
        assert strict_bigquery.operations(f"{PROJECT}.{bq_dataset}.{destination}") <= 10


def test_b9_a_run_past_max_table_operations_fails_before_the_batch(
    target_config, strict_bigquery, bq_dataset, rows
):
    lines = singer_lines(
        schema("events", {**ID}, ["id"]),
        *(record("events", {"id": i}) for i in range(10)),
        {"type": "STATE", "value": {"done": True}},
    )
    result = run_target(target_config(batch_max_rows=1, max_table_operations=3), lines)
    assert result.returncode == 1
    assert "this batch would be operation 4 on its table in this run" in result.stderr
    assert strict_bigquery.operations(f"{PROJECT}.{bq_dataset}.events") == 3
    assert len(rows("events")) == 7  # batches of 1, 2 and 4 rows
    assert result.states == []
