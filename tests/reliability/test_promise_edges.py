"""The promise at the edges (target side): each way it broke, found by adversarial inputs.

Every test runs the real target as a subprocess against the session's BigQuery emulator and
judges what matters: the rows each table holds, the exact STATE lines printed, the error
text. Where the issue asked for it, inputs are generated variants (name lengths around
BigQuery's limits, other scripts, case variants) rather than one example. docs/RELIABILITY.md
has one row per case.
"""

from __future__ import annotations

import gzip
import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dev_services.bigquery_proxy import BigQueryProxy, Rule
from dev_services.process import Service
from google.cloud import bigquery

TARGET = Path(sys.executable).parent / "target-bigquery-lite"
TIMEOUT = 240


@dataclass(frozen=True)
class Run:
    """A finished target run."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def states(self) -> list[str]:
        """The STATE lines, exactly as printed."""
        return [line for line in self.stdout.splitlines() if line.strip()]


@dataclass
class Target:
    """The target with one config, fed Singer messages."""

    config: dict[str, Any]
    folder: Path

    def run(self, lines: list[dict[str, Any] | str], **overrides: Any) -> Run:
        config = self.folder / "target.json"
        config.write_text(json.dumps({**self.config, **overrides}))
        data = "".join(
            (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines
        )
        proc = subprocess.run(
            [str(TARGET), "--config", str(config)],
            input=data.encode(),
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
        run = Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        assert "Traceback" not in run.stderr, run.stderr
        return run


@pytest.fixture
def target(tmp_path: Path, bigquery_emulator: Service, bq_dataset: str) -> Target:
    return Target(
        {
            "project": "flows-local",
            "dataset": bq_dataset,
            "api_endpoint": bigquery_emulator.url,
            "staging_dir": str(tmp_path / "staging"),
            "batch_roots": [str(tmp_path / "batches")],
            "max_retries": 1,
        },
        tmp_path,
    )


def schema(stream: str, properties: dict[str, Any] | None = None, keys: tuple = ("id",)) -> dict:
    props = properties or {"id": {"type": "integer"}, "v": {"type": ["string", "null"]}}
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": props},
        "key_properties": list(keys),
    }


def record(stream: str, **values: Any) -> dict[str, Any]:
    return {"type": "RECORD", "stream": stream, "record": values}


def state(value: Any) -> dict[str, Any]:
    return {"type": "STATE", "value": value}


def rows(client: bigquery.Client, dataset: str, table: str) -> list[dict[str, Any]]:
    names = {t.table_id for t in client.list_tables(dataset)}
    if table not in names:
        return []
    result = client.query(f"SELECT * FROM `{client.project}.{dataset}.{table}` ORDER BY id")
    return [dict(row.items()) for row in result]


def row_count(client: bigquery.Client, dataset: str, table: str) -> int:
    """The table's rows (0 if it does not exist): for tables without an `id` to order by."""
    names = {t.table_id for t in client.list_tables(dataset)}
    if table not in names:
        return 0
    sql = f"SELECT COUNT(*) AS n FROM `{client.project}.{dataset}.{table}`"
    return next(iter(client.query(sql).result()))["n"]


# --- 1: tables whose names share a long prefix -----------------------------------------------


EMULATOR_NAME_LIMIT = 255
"""The emulator keeps a table in a folder of its name: longer names fail there ("File name too
long"), though BigQuery allows 1,024 bytes. Unit tests cover job and staging-table names of
tables up to 1,024 bytes (`test_unit_jobs`)."""


def long_names(prefix: str) -> Iterator[tuple[str, str]]:
    """(stream, table) pairs sharing 150 to 253 characters (the emulator's limit, see above)."""
    for shared in (150, 199, 200, 201, 230, EMULATOR_NAME_LIMIT - 2 - len(prefix)):
        for tail in ("a", "b"):
            stream = "s" * shared + tail
            yield stream, prefix + stream


@pytest.mark.parametrize("prefix", ["", "raw_"], ids=["no-prefix", "prefix"])
def test_streams_sharing_a_long_prefix_each_get_their_own_rows(
    target: Target, bq_client: bigquery.Client, bq_dataset: str, prefix: str
) -> None:
    pairs = list(long_names(prefix))
    lines: list[dict[str, Any]] = []
    for number, (stream, _) in enumerate(pairs):
        lines.append(schema(stream))
        lines += [record(stream, id=i, v=f"{number}-{i}") for i in range(1, 4)]
    lines.append(state({"done": len(pairs)}))
    run = target.run(lines, table_prefix=prefix)
    assert run.returncode == 0, run.stderr
    assert run.states == ['{"done": 12}'] * 2
    for number, (_, table) in enumerate(pairs):
        assert [(r["id"], r["v"]) for r in rows(bq_client, bq_dataset, table)] == [
            (i, f"{number}-{i}") for i in range(1, 4)
        ], table[-20:]


def test_long_names_with_overwrite_and_versions_keep_to_their_own_tables(
    target: Target, bq_client: bigquery.Client, bq_dataset: str
) -> None:
    pairs = list(long_names(""))[-4:]
    lines: list[dict[str, Any]] = []
    for number, (stream, _) in enumerate(pairs):
        lines += [schema(stream), {"type": "ACTIVATE_VERSION", "stream": stream, "version": 7}]
        lines += [record(stream, id=i, v=f"{number}") for i in range(1, 3)]
    run = target.run(lines, load_method="overwrite")
    assert run.returncode == 0, run.stderr
    for number, (_, table) in enumerate(pairs):
        assert [
            (r["id"], r["v"], r["_sdc_table_version"]) for r in rows(bq_client, bq_dataset, table)
        ] == [
            (1, f"{number}", 7),
            (2, f"{number}", 7),
        ]


# --- 2: names in other scripts, and folding across runs --------------------------------------

SCRIPT_NAMES = {
    "cyrillic": ("заказы", "товары", "имя", "дом"),
    "greek": ("παραγγελίες", "προϊόντα", "όνομα", "σπίτι"),
    "arabic": ("طلبات", "منتجات", "اسم", "بيت"),
    "cjk": ("注文", "商品", "名前", "家"),
    "devanagari": ("आदेश", "उत्पाद", "नाम", "घर"),
}


@pytest.mark.parametrize("script", sorted(SCRIPT_NAMES))
def test_non_latin_streams_and_properties_keep_their_names(
    target: Target, bq_client: bigquery.Client, bq_dataset: str, script: str
) -> None:
    first, second, name, house = SCRIPT_NAMES[script]
    props = {"id": {"type": "integer"}, name: {"type": "string"}, house: {"type": "string"}}
    for stream in (first, second):  # separate runs, the same ids
        run = target.run(
            [schema(stream, props), record(stream, id=1, **{name: stream, house: "h"})]
        )
        assert run.returncode == 0, run.stderr
    for stream in (first, second):
        assert rows(bq_client, bq_dataset, stream) == [{"id": 1, name: stream, house: "h"}]


@pytest.mark.parametrize(
    ("first", "second"),
    [("a b", "a_b"), ("a_b", "a.b"), ("naïve", "naive"), ("x/y", "x$y"), ("A-1", "A_1")],
)
def test_a_stream_folding_onto_another_streams_table_is_refused(
    target: Target, bq_client: bigquery.Client, bq_dataset: str, first: str, second: str
) -> None:
    assert target.run([schema(first), record(first, id=1, v="first")]).returncode == 0
    run = target.run([schema(second), record(second, id=1, v="second"), state({"s": 1})])
    assert run.returncode == 1
    assert "was created for another stream" in run.stderr
    assert f"not for stream '{second}'" in run.stderr
    assert run.states == []
    table = first.replace(" ", "_").replace("/", "_").replace("-", "_").replace("ï", "i")
    assert [r["v"] for r in rows(bq_client, bq_dataset, table)] == ["first"]


@pytest.mark.parametrize(("first", "second"), [("a b", "a_b"), ("e-mail", "e mail"), ("1x", "_1x")])
def test_a_property_folding_onto_another_propertys_column_is_refused(
    target: Target, bq_client: bigquery.Client, bq_dataset: str, first: str, second: str
) -> None:
    def props(name: str) -> dict[str, Any]:
        return {"id": {"type": "integer"}, name: {"type": "string"}}

    assert (
        target.run([schema("s", props(first)), record("s", id=1, **{first: "1"})]).returncode == 0
    )
    run = target.run([schema("s", props(second)), record("s", id=1, **{second: "2"})])
    assert run.returncode == 1
    assert f"property {second!r} maps to column" in run.stderr
    assert f"which holds property {first!r}" in run.stderr
    (row,) = rows(bq_client, bq_dataset, "s")
    assert list(row.values()) == [1, "1"]


# --- 3: a property renamed only by case -----------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [("Name", "name"), ("name", "NAME"), ("ÉtÉ", "été")])
def test_a_property_renamed_by_case_keeps_its_column_and_values(
    target: Target, bq_client: bigquery.Client, bq_dataset: str, first: str, second: str
) -> None:
    def props(name: str) -> dict[str, Any]:
        return {"id": {"type": "integer"}, name: {"type": ["string", "null"]}}

    one = target.run([schema("people", props(first)), record("people", id=1, **{first: "kept"}),
                      record("people", id=2, **{first: "old"})])  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = target.run([schema("people", props(second)), record("people", id=2, **{second: "new"}),
                      record("people", id=3, **{second: "added"})])  # fmt: skip
    assert two.returncode == 0, two.stderr
    table = bq_client.get_table(f"{bq_dataset}.people")
    (column,) = [f.name for f in table.schema if f.name != "id"]
    values = [(r["id"], r[column]) for r in rows(bq_client, bq_dataset, "people")]
    assert values == [(1, "kept"), (2, "new"), (3, "added")]


# --- 4: overwrite with an incremental tap -----------------------------------------------------

INCREMENTAL = {"bookmarks": {"events": {"replication_key": "id", "replication_key_value": 20}}}


@pytest.mark.parametrize("records", [True, False], ids=["boundary-rows", "schema-only"])
def test_overwrite_refuses_a_state_with_a_bookmark_and_replaces_nothing(
    target: Target, bq_client: bigquery.Client, bq_dataset: str, records: bool
) -> None:
    full = [schema("events"), *[record("events", id=i, v="full") for i in range(1, 21)]]
    assert target.run(full, load_method="overwrite").returncode == 0
    again = [schema("events")]
    if records:
        again.append(record("events", id=20, v="boundary"))
    run = target.run([*again, state(INCREMENTAL)], load_method="overwrite")
    assert run.returncode == 1
    assert (
        "is loaded with load_method overwrite, but the tap's STATE holds a bookmark" in run.stderr
    )
    assert run.states == []
    assert [r["v"] for r in rows(bq_client, bq_dataset, "events")] == ["full"] * 20


def test_overwrite_accepts_full_table_states(
    target: Target, bq_client: bigquery.Client, bq_dataset: str
) -> None:
    done = {"bookmarks": {"events": {"last_replication_method": "FULL_TABLE", "version": 5,
                                     "xmin": None}}}  # fmt: skip
    run = target.run(
        [schema("events"), record("events", id=1, v="x"), state(done)], load_method="overwrite"
    )
    assert run.returncode == 0, run.stderr
    assert [json.loads(line) for line in run.states] == [done]


# --- 5: ACTIVATE_VERSION ---------------------------------------------------------------------


def test_unversioned_records_before_activate_version_are_kept(
    target: Target, bq_client: bigquery.Client, bq_dataset: str
) -> None:
    old = [schema("full"), {"type": "ACTIVATE_VERSION", "stream": "full", "version": 1},
           *[record("full", id=i, v="v1") for i in (1, 2, 3)]]  # fmt: skip
    assert target.run(old).returncode == 0
    new = [schema("full"), record("full", id=10, v="before"), record("full", id=11, v="before"),
           {"type": "ACTIVATE_VERSION", "stream": "full", "version": 2},
           {**record("full", id=12, v="v2"), "version": 2}, state({"full": 2})]  # fmt: skip
    run = target.run(new)
    assert run.returncode == 0, run.stderr
    assert [(r["id"], r["v"]) for r in rows(bq_client, bq_dataset, "full")] == [
        (10, "before"), (11, "before"), (12, "v2"),
    ]  # fmt: skip


def test_the_state_after_a_full_sync_waits_for_the_old_version_delete(
    target: Target, bigquery_emulator: Service
) -> None:
    lines = [schema("full"), {"type": "ACTIVATE_VERSION", "stream": "full", "version": 3},
             {**record("full", id=1, v="a"), "version": 3}, state({"full": 3})]  # fmt: skip
    with BigQueryProxy(bigquery_emulator.url) as proxy:
        delete = proxy.add(Rule("POST", r"/jobs", body=r"_versions_", action="hold"))
        config = target.folder / "target.json"
        config.write_text(json.dumps({**target.config, "api_endpoint": proxy.url}))
        proc = subprocess.Popen(
            [str(TARGET), "--config", str(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write("".join(json.dumps(line) + "\n" for line in lines).encode())
        proc.stdin.close()
        assert delete.matched.wait(120), "the version clean-up never started"
        proc.kill()  # killed with the DELETE in flight: no state may have been printed
        proc.stdin = None  # closed already: communicate() must not flush it
        stdout, _ = proc.communicate(timeout=60)
    assert stdout == b""


# --- 7: STATE values pass through exactly -----------------------------------------------------


def test_states_are_passed_on_as_the_tap_wrote_them(target: Target) -> None:
    values = [
        '{"bookmarks": {"s": {"replication_key_value": 12345678901234567.89}}}',
        '{"bookmarks": {"s": {"replication_key_value": 0.99999999999999999999}}}',
        '{"bookmarks": {"s": {"replication_key_value": 1e400, "n": NaN}}}',
        "0",
        "false",
        '""',
        "[]",
    ]
    lines: list[dict[str, Any] | str] = [schema("s")]
    for number, value in enumerate(values, start=1):
        lines += [record("s", id=number), f'{{"type": "STATE", "value": {value}}}']
    run = target.run(lines, batch_max_rows=1)  # a commit after each record: every state goes
    assert run.returncode == 0, run.stderr
    assert run.states[-1] == values[-1]
    assert set(values) == set(run.states)  # each exactly as sent; the last one twice


# --- 8: BATCH manifests confined to batch_roots -----------------------------------------------


def test_a_manifest_pointing_at_a_key_file_is_refused_before_reading_it(
    target: Target, bq_client: bigquery.Client, bq_dataset: str
) -> None:
    key = target.folder / "service-account.json"
    key.write_text(json.dumps({"type": "service_account", "private_key": "-----BEGIN"}) + "\n")
    (target.folder / "batches").mkdir()
    link = target.folder / "batches" / "rows.jsonl"
    link.symlink_to(key)
    props = {"type": {"type": ["string", "null"]}, "private_key": {"type": ["string", "null"]}}
    for url in (key.as_uri(), link.as_uri()):
        batch = {"type": "BATCH", "stream": "leak", "encoding": {"format": "jsonl"},
                 "manifest": [url]}  # fmt: skip
        run = target.run([schema("leak", props, keys=()), batch])
        assert run.returncode == 1
        assert "is outside batch_roots" in run.stderr
        assert row_count(bq_client, bq_dataset, "leak") == 0


# --- 11: input that used to end in a traceback ------------------------------------------------


@pytest.mark.parametrize("stream", [["flows"], {"name": "flows"}, 7, None])
def test_a_record_with_a_stream_that_is_not_a_name_is_an_input_error(
    target: Target, stream: Any
) -> None:
    run = target.run([schema("flows"), {"type": "RECORD", "stream": stream, "record": {"id": 1}}])
    assert run.returncode == 1
    assert "RECORD message on input line 2 has no valid 'stream'" in run.stderr


@pytest.mark.parametrize("damage", ["truncated", "bad-crc", "not-json"])
def test_damaged_batch_files_name_the_file(target: Target, damage: str) -> None:
    folder = target.folder / "batches"
    folder.mkdir()
    body = b"".join(b'{"id": %d, "v": "x"}\n' % i for i in range(1, 2001))
    packed = gzip.compress(body)
    path = folder / "flows-1.jsonl.gz"
    if damage == "truncated":
        path.write_bytes(packed[: len(packed) // 2])
    elif damage == "bad-crc":
        path.write_bytes(packed[:-8] + bytes(8))
    else:
        path.write_bytes(gzip.compress(body + b"garbage\n"))
    batch = {"type": "BATCH", "stream": "flows", "encoding": {"format": "jsonl"},
             "manifest": [path.as_uri()]}  # fmt: skip
    run = target.run([schema("flows"), batch])
    assert run.returncode == 1
    if damage == "not-json":
        assert f"BATCH file {path} line 2001 is not valid JSON" in run.stderr
    else:
        assert f"BATCH for stream 'flows': {path} is not a complete gzip file" in run.stderr
    assert "input line 1" not in run.stderr


# --- 12: staging folders of failed runs --------------------------------------------------------


def test_failed_runs_leave_at_most_one_staging_folder_and_success_removes_it(
    target: Target,
) -> None:
    staging = target.folder / "staging"
    bad = [schema("s"), *[record("s", id=i) for i in range(1, 5)], record("s", id="x")]
    for _ in range(3):
        run = target.run(bad, batch_max_rows=2)
        assert run.returncode == 1
        assert "staging files kept for inspection" in run.stderr
    folders = sorted(p.name for p in staging.iterdir())
    assert len(folders) == 1, folders
    assert "removed the staging folders of 1 earlier failed run(s)" in run.stderr
    good = target.run([schema("s"), record("s", id=1)])
    assert good.returncode == 0, good.stderr
    assert list(staging.iterdir()) == []


# --- 13: many streams, few file descriptors ----------------------------------------------------


def test_more_streams_than_open_files_allowed_still_load(
    target: Target, bq_client: bigquery.Client, bq_dataset: str
) -> None:
    streams = [f"s{n:03d}" for n in range(40)]
    lines: list[dict[str, Any]] = [schema(name, keys=()) for name in streams]
    lines += [record(name, id=1, v=name) for name in streams]  # all in one batch
    config = target.folder / "target.json"
    config.write_text(json.dumps(target.config))

    def few_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))  # 40 open files would not fit

    proc = subprocess.run(
        [str(TARGET), "--config", str(config)],
        input="".join(json.dumps(line) + "\n" for line in lines).encode(),
        capture_output=True,
        timeout=TIMEOUT,
        preexec_fn=few_files,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    loaded = {t.table_id for t in bq_client.list_tables(bq_dataset)}
    assert loaded == set(streams)


# --- 14: batch_max_rows inside one BATCH file ------------------------------------------------


@pytest.mark.parametrize("validate", [True, False], ids=["checked", "copied-raw"])
def test_batch_max_rows_splits_a_large_batch_file(
    target: Target, bq_client: bigquery.Client, bq_dataset: str, validate: bool
) -> None:
    folder = target.folder / "batches"
    folder.mkdir()
    path = folder / "flows.jsonl"
    path.write_bytes(b"".join(b'{"id": %d, "v": "x"}\n' % i for i in range(1, 5001)))
    batch = {"type": "BATCH", "stream": "flows", "encoding": {"format": "jsonl"},
             "manifest": [path.as_uri()]}  # fmt: skip
    run = target.run(
        [schema("flows"), batch, state({"n": 5000})],
        batch_max_rows=700,
        validate_records=validate,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("(batch_max_rows): 700 rows") == 7
    assert "flush 8 (end of input): 100 rows" in run.stderr
    assert [r["id"] for r in rows(bq_client, bq_dataset, "flows")] == list(range(1, 5001))
