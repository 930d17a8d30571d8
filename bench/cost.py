"""`make bench CONFIGS=cost`: what an incremental run's MERGE admits, against the table size.

For each setting the recorded Singer file (all `--rows` rows) is loaded into a table of its
own (not measured), then an increment of new rows right after the table's end (the last
rows of the file again, with new ids and later times, as a 3-hourly run would bring) is
merged and measured. The emulator returns no byte counts, so the MERGE's statement is read
back by its job id and `dev_services.merge_cost` estimates the bytes its target side
admits: the rows of the partitions its constant filter admits times their size. With
`merge_partition_filter` that stays flat in the table size; without it, it is the table.
An insert-only MERGE (`merge_update: false`) reads only the target's `id` and `time`, so
the estimate counts those two columns for it.
"""

from __future__ import annotations

import re
import subprocess
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from dev_services.merge_cost import admitted

from bench.processes import Stage

if TYPE_CHECKING:
    from bench.bench import Bench

DELTA_ROWS = 50_000
FLOWS_LAYOUT = {
    "partition_field": "time",
    "partition_range": {"start": 0, "end": 315_576_000, "interval": 43_200},
    "cluster_fields": ["id"],
}
SETTINGS = (
    ("merge, unfiltered", FLOWS_LAYOUT),
    ("merge_partition_filter", {**FLOWS_LAYOUT, "merge_partition_filter": True}),
    ("merge_update false", {**FLOWS_LAYOUT, "merge_partition_filter": True, "merge_update": False}),
)
MERGE_JOB = re.compile(rb"job (bqlite_\S+_merge_\d+): MERGE")


def increment_file(recorded: Path, out: Path, rows: int) -> int:
    """Write SCHEMA + `rows` new RECORDs after the recorded file's end; return the count."""
    schema, records, max_id = None, deque[dict[str, Any]](maxlen=rows), 0
    with recorded.open("rb") as lines:
        for line in lines:
            message = orjson.loads(line)
            if message.get("type") == "SCHEMA" and schema is None:
                schema = line
            elif message.get("type") == "RECORD":
                records.append(message)
                max_id = max(max_id, message["record"]["id"])
    assert schema is not None, f"{recorded} holds no SCHEMA"
    assert records, f"{recorded} holds no records"
    shift = records[-1]["record"]["time"] + 1 - records[0]["record"]["time"]
    with out.open("wb") as file:
        file.write(schema)
        for message in records:
            record: dict[str, Any] = message["record"]
            new = {**record, "id": record["id"] + max_id, "time": record["time"] + shift}
            file.write(orjson.dumps({**message, "record": new}) + b"\n")
    return len(records)


def run_cost(bench: Bench) -> None:
    """One measured incremental MERGE per setting, each into a table of `--rows` rows."""
    delta_rows = min(DELTA_ROWS, max(1, bench.rows // 20))
    delta = bench.work / "cost-increment.singer"
    delta_rows = increment_file(bench.recorded, delta, delta_rows)
    for label, settings in SETTINGS:
        dataset = "bench_cost_" + re.sub(r"\W+", "_", label)
        target = [*bench.target_argv(dataset, **settings), "--input"]
        subprocess.run(
            [*target, str(bench.recorded)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        name = f"cost: {delta_rows:,}-row increment, {label}"
        log = bench.log_path(name)

        columns = None if settings.get("merge_update", True) else ("id", "time")

        def check(
            dataset: str = dataset, log: Path = log, columns: tuple[str, ...] | None = columns
        ) -> tuple[bool, str]:
            return _admitted_detail(bench, dataset, log, delta_rows, columns)

        bench.measure(name, [Stage("target", [*target, str(delta)])], check, group="cost")


def _admitted_detail(
    bench: Bench, dataset: str, log: Path, delta_rows: int, columns: tuple[str, ...] | None
) -> tuple[bool, str]:
    """The row check (table = source + increment) and the MERGE's admitted bytes."""
    table_id = f"{bench.client.project}.{dataset}.flows"
    location = bench.client.get_dataset(dataset).location
    jobs = MERGE_JOB.findall(log.read_bytes())
    sql = bench.client.get_job(jobs[-1].decode(), location=location).query
    found = admitted(bench.client, table_id, sql, columns)
    assert bench.expected is not None
    ok = found.table_rows == bench.expected.rows + delta_rows
    bench.client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
    return ok, (
        f"{found.table_rows:,} rows; MERGE admits {found.rows:,} rows, "
        f"{found.bytes / 1e6:,.2f} of {found.table_bytes / 1e6:,.2f} MB (estimate)"
    )
