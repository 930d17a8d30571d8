"""The bad-input catalog: what target-bigquery-lite does with each kind of broken input.

Every case first commits a good prefix (ids 1-20 and their STATE, a previous run into the
same dataset), then feeds the case's input (`bad_input/<case>.singer`, or generated for the
20 MB record) to a fresh target process, as the next run would. Each asserts the exit code,
the message, that the process ended (timeout), that no traceback was printed, the STATE
lines printed, that every printed bookmark is covered by the table, and that the `flows`
table holds exactly the prefix plus the rows the case should have committed, in every
column. Records have `time == id`, so a bookmark N covers ids 1..N.

docs/RELIABILITY.md has one row per case, with the reasoning behind each behaviour.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dev_services.bigquery_emulator import emulator_client
from dev_services.process import Service
from dev_services.strict_bigquery import create_dataset
from google.cloud import bigquery

CATALOG = Path(__file__).parent / "bad_input"
TARGET = Path(sys.executable).parent / "target-bigquery-lite"
TIMEOUT = 120
HUGE = 20 * 1024 * 1024


@dataclass(frozen=True)
class Outcome:
    """A finished target run."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def bookmarks(self) -> list[int]:
        """The `flows` bookmark of each STATE line printed (None for other states)."""
        states = [json.loads(line) for line in self.stdout.splitlines() if line.strip()]
        return [
            s.get("bookmarks", {}).get("flows", {}).get("replication_key_value") for s in states
        ]


@dataclass(frozen=True)
class Case:
    """One kind of bad input and what must happen to it."""

    name: str
    exit_code: int
    message: str
    committed: tuple[int, ...] = ()
    bookmarks: tuple[int | None, ...] = ()
    extra: Callable[[bigquery.Client, str, Outcome], None] | None = None

    def input(self) -> bytes:
        """The bytes fed to the target."""
        if self.name == "record_of_20_mb":
            return huge_record_input()
        return (CATALOG / f"{self.name}.singer").read_bytes()


def huge_record_input() -> bytes:
    """SCHEMA, records 21-25 (23 with a 20 MB src_comp), STATE 25."""
    lines = (CATALOG / "unknown_message_type.singer").read_text().splitlines()
    schema, records = lines[0], [line for line in lines if '"RECORD"' in line][:5]
    big = json.loads(records[2])
    big["record"]["src_comp"] = "C" + "x" * (HUGE - 1)
    records[2] = json.dumps(big)
    state = {"bookmarks": {"flows": {"replication_key": "time", "replication_key_value": 25}}}
    state_line = json.dumps({"type": "STATE", "value": state})
    return "\n".join([schema, *records, state_line, ""]).encode()


def records_of(data: bytes, stream: str = "flows") -> dict[int, dict[str, Any]]:
    """The parseable RECORD messages of an input, by id."""
    found = {}
    for line in data.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(message, dict)
            and message.get("type") == "RECORD"
            and message.get("stream") == stream
            and isinstance(message["record"].get("id"), int)
        ):
            found[message["record"]["id"]] = message["record"]
    return found


def table_rows(client: bigquery.Client, table: str) -> dict[int, dict[str, Any]]:
    """All rows of a table by id ({} when it does not exist)."""
    dataset, name = table.split(".")
    if name not in {t.table_id for t in client.list_tables(dataset)}:
        return {}
    return {row["id"]: dict(row.items()) for row in client.query(f"SELECT * FROM `{table}`")}


def other_table(name: str, rows: int) -> Callable[[bigquery.Client, str, Outcome], None]:
    """Extra check: the case's other stream landed in table `name` with `rows` rows."""

    def check(client: bigquery.Client, dataset: str, outcome: Outcome) -> None:
        assert len(table_rows(client, f"{dataset}.{name}")) == rows

    return check


def hostile_names_landed(client: bigquery.Client, dataset: str, outcome: Outcome) -> None:
    rows = table_rows(client, f"{dataset}.flows___DROP_TABLE_flows____")
    assert sorted(rows) == [21, 22]
    assert rows[21]["note____DELETE_FROM_flows_WHERE___1"] == "'; DROP TABLE flows; --"
    assert rows[22]["select"] == "`*` FROM flows"
    stream = "flows`; DROP TABLE flows; --"
    assert [json.loads(line) for line in outcome.stdout.splitlines()] == [
        {"bookmarks": {stream: {"replication_key_value": 22}}}
    ] * 2


def deep_tree_is_json(client: bigquery.Client, dataset: str, outcome: Outcome) -> None:
    table = client.get_table(f"{dataset}.trees")
    field, levels = table.schema[1], 0
    while field.field_type == "RECORD":
        field, levels = field.fields[0], levels + 1
    assert (levels, field.field_type) == (15, "JSON")
    (row,) = table_rows(client, f"{dataset}.trees").values()
    value = row["tree"]
    for level in range(15):
        value = value[f"l{level}"]
    assert value == {"l15": {"l16": {"l17": {"l18": {"l19": 7}}}}}


def state_kept_exact(client: bigquery.Client, dataset: str, outcome: Outcome) -> None:
    assert '"cursor": 123456789012345678901234567890' in outcome.stdout  # as sent


def empty_events_table(client: bigquery.Client, dataset: str, outcome: Outcome) -> None:
    assert table_rows(client, f"{dataset}.events") == {}


def huge_value_intact(client: bigquery.Client, dataset: str, outcome: Outcome) -> None:
    sql = f"SELECT LENGTH(src_comp) AS n FROM `{dataset}.flows` WHERE id = 23"
    assert [row["n"] for row in client.query(sql)] == [HUGE]


FLOWS_21_30 = tuple(range(21, 31))
FLOWS_21_25 = tuple(range(21, 26))
CASES = [
    Case("malformed_json", 1, "input line 8 is not valid JSON: Expecting"),
    Case(
        "non_utf8_bytes",
        1,
        "input line 8 is not valid JSON: 'utf-8' codec can't decode byte 0xff",
    ),
    Case(
        "lone_surrogate",
        1,
        "stream 'flows', record 6: field 'src_comp' holds a lone UTF-16 surrogate",
    ),
    Case("record_before_schema", 1, "RECORD for stream 'flows' on line 1 before its SCHEMA"),
    Case(
        "record_violates_schema",
        1,
        "stream 'flows', record 6 violates its schema: field 'time': 'yesterday' is not of "
        "type 'integer' (input line 8)",
    ),
    Case(
        "missing_key_property",
        1,
        "stream 'flows', record 6 violates its schema: field 'id': 'id' is a required property",
    ),
    Case(
        "null_key",
        1,
        "stream 'flows', record 6: key property 'id' is missing or null (a merge needs every "
        "key) (input line 8)",
    ),
    Case(
        "unknown_message_type",
        0,
        "skipping messages of unknown type 'METRIC' (first on line 2)",
        FLOWS_21_30,
        (30, 30),
    ),
    Case("state_before_records", 0, "done: 10 records", FLOWS_21_30, (20, 30, 30)),
    Case("empty_input", 0, "done: 0 records"),
    Case(
        "schema_without_properties",
        1,
        "SCHEMA for stream 'flows' has no properties: a BigQuery table needs columns",
    ),
    Case("schema_with_unsupported_keywords", 0, "done: 10 records", FLOWS_21_30, (30, 30)),
    Case(
        "names_colliding_after_sanitizing",
        1,
        "stream 'flows': properties 'dst_comp' and 'dst-comp' both become BigQuery column "
        "'dst_comp'",
    ),
    Case(
        "names_with_sql_metacharacters",
        0,
        "-> flows___DROP_TABLE_flows____ (merge): received 2, committed 2",
        bookmarks=(None, None),
        extra=hostile_names_landed,
    ),
    Case("record_of_20_mb", 0, "done: 5 records", FLOWS_21_25, (25, 25), huge_value_intact),
    Case("deeply_nested_record", 1, "input line 8 nests objects or arrays too deeply to parse"),
    Case(
        "objects_nested_beyond_bigquery_limit",
        0,
        "property tree.l0.l1.l2.l3.l4.l5.l6.l7.l8.l9.l10.l11.l12.l13.l14 is nested deeper "
        "than BigQuery's 15 RECORD levels; it is stored as one JSON value",
        FLOWS_21_30,
        (30, 30),
        deep_tree_is_json,
    ),
    Case(
        "integer_beyond_int64",
        1,
        "stream 'flows', record 6 violates its schema: field 'byte_count': "
        "9223372036854775808 is outside BigQuery's INT64 range",
    ),
    Case(
        "state_with_integer_beyond_64_bits",
        0,
        "done: 5 records",
        FLOWS_21_25,
        (25, 25),
        state_kept_exact,
    ),
    Case(
        "timestamp_out_of_range",
        1,
        "stream 'events', record 2 violates its schema: field 'seen_at': "
        "'10000-01-01T00:00:00Z' is not a date or timestamp BigQuery can store",
        extra=empty_events_table,
    ),
    Case(
        "schema_change_narrowing_a_type",
        1,
        "incompatible schema change for table flows-local.{dataset}.flows: column src_port is "
        "STRING REQUIRED in BigQuery but the stream's SCHEMA now maps it to INT64 REQUIRED",
        FLOWS_21_25,
        (25,),
    ),
    Case(
        "batch_with_missing_file",
        1,
        "BATCH for stream 'flows': batch file "
        "/nonexistent/target-bigquery-lite/flows-0001.json.gz does not exist",
    ),
    Case(
        "batch_with_non_file_url",
        1,
        "BATCH for stream 'flows': https://storage.example.com/bucket/flows-0001.json.gz is "
        "not a local file:// URL",
    ),
    Case(
        "remote_ref_in_schema",
        1,
        "SCHEMA for stream 'flows': $ref 'http://127.0.0.1:9/port.json' is not a reference "
        "into the schema itself ('#/...'); remote schemas are never fetched",
    ),
    Case("state_without_value", 1, "STATE message on input line 8 has no 'value'"),
    Case("line_not_an_object", 1, "input line 8 is not a JSON object"),
    Case("input_ending_mid_message", 1, "input ended in the middle of a message (line 8"),
]


def run_target(config: Path, data: bytes) -> Outcome:
    done = subprocess.run(
        [str(TARGET), "--config", str(config)],
        input=data,
        capture_output=True,
        timeout=TIMEOUT,
        env={k: v for k, v in os.environ.items() if k != "BIGQUERY_EMULATOR_HOST"},
    )
    return Outcome(done.returncode, done.stdout.decode(), done.stderr.decode(errors="replace"))


def test_every_catalog_file_has_a_case() -> None:
    files = {path.stem for path in CATALOG.glob("*.singer")} - {"_prefix"}
    assert files == {case.name for case in CASES} - {"record_of_20_mb"}
    assert len(CASES) >= 20


@dataclass(frozen=True)
class CaseRun:
    """A case's prefix run, the rows it committed, and the case's own run."""

    dataset: str
    staging: Path
    prefix: Outcome
    committed: dict[int, dict[str, Any]]
    outcome: Outcome


def run_case(case: Case, folder: Path, endpoint: str) -> CaseRun:
    """Commit the prefix into a new dataset, then feed the case's input to a new target."""
    client = emulator_client(endpoint)  # one per thread
    folder.mkdir()
    dataset = f"bad_input_{case.name}_{uuid.uuid4().hex[:6]}"
    create_dataset(endpoint, dataset)
    config = folder / "target.json"
    config.write_text(
        json.dumps(
            {
                "project": client.project,
                "dataset": dataset,
                "api_endpoint": endpoint,
                "staging_dir": str(folder / "staging"),
                "batch_roots": ["/nonexistent/target-bigquery-lite", str(folder)],
                "max_retries": 1,
            }
        )
    )
    prefix = run_target(config, (CATALOG / "_prefix.singer").read_bytes())
    committed = table_rows(client, f"{dataset}.flows") if prefix.returncode == 0 else {}
    return CaseRun(dataset, folder / "staging", prefix, committed, run_target(config, case.input()))


@pytest.fixture(scope="module")
def catalog_runs(
    tmp_path_factory: pytest.TempPathFactory, bigquery_emulator: Service, bq_client: bigquery.Client
) -> Iterator[dict[str, CaseRun | BaseException]]:
    """Every case's runs, three at a time (each case has its own dataset and processes)."""
    base = tmp_path_factory.mktemp("bad-input")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            case.name: pool.submit(run_case, case, base / case.name, bigquery_emulator.url)
            for case in CASES
        }
        runs: dict[str, CaseRun | BaseException] = {}
        for name, future in futures.items():
            error = future.exception()
            runs[name] = error if error is not None else future.result()
    yield runs
    for run in runs.values():
        if isinstance(run, CaseRun):
            bq_client.delete_dataset(run.dataset, delete_contents=True, not_found_ok=True)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_input_after_a_committed_prefix(
    case: Case, catalog_runs: dict[str, CaseRun | BaseException], bq_client: bigquery.Client
) -> None:
    run = catalog_runs[case.name]
    if isinstance(run, BaseException):
        raise run
    prefix_input = (CATALOG / "_prefix.singer").read_bytes()
    assert run.prefix.returncode == 0, run.prefix.stderr
    assert run.prefix.bookmarks == [20, 20]
    assert run.committed == records_of(prefix_input)
    bq_dataset, outcome, committed = run.dataset, run.outcome, run.committed
    table = f"{bq_dataset}.flows"
    data = case.input()

    assert outcome.returncode == case.exit_code, outcome.stderr[-3000:]
    assert case.message.format(dataset=bq_dataset) in outcome.stderr, outcome.stderr[-3000:]
    assert "Traceback" not in outcome.stderr
    assert outcome.bookmarks == list(case.bookmarks)
    after = table_rows(bq_client, table)
    expected = {**committed, **{i: records_of(data)[i] for i in case.committed}}
    if case.name == "record_of_20_mb":  # compared by length in its extra check
        after[23]["src_comp"] = expected[23]["src_comp"]
    assert after == expected  # nothing committed lost, nothing half-loaded, every column
    for bookmark in outcome.bookmarks:
        if bookmark is not None:
            assert set(range(1, bookmark + 1)) <= set(after), f"state {bookmark} is ahead"
    if case.exit_code:
        left = [path for path in run.staging.glob("*/*") if path.name != ".lock"]
        assert "staging files kept" in outcome.stderr or not left  # a dead run's lock: swept later
    if case.extra is not None:
        case.extra(bq_client, bq_dataset, outcome)
