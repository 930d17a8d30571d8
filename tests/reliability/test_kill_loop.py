"""The short kill-loops (`make test`), and proof that their checks catch the bugs they are for.

The loop itself is `tests/reliability/kill_loop.py`; `make reliability KILLS=200` runs the
long one. Set KILL_LOOP_SEED to repeat a loop's plan, KILL_LOOP_KILLS to change its length.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from dev_services.flows_check import table_figures
from dev_services.process import Service
from google.cloud import bigquery, storage

from tests.conftest import generate_db
from tests.reliability.gcs_lane import loads_of_other_runs, rebuild_into
from tests.reliability.kill_loop import MOMENTS, KillLoop, KillSpec, clean_up, make_lanes
from tests.reliability.pipeline import BIN, Lane, Sizes, rows_from

KILLS = int(os.environ.get("KILL_LOOP_KILLS", "15"))
SHORT = Sizes(page_size=1_500, batch_max_rows=2_000)  # 8,000 rows: 6 pages, 4 batches


@pytest.mark.timeout(600)
def test_short_kill_loop_loses_nothing_duplicates_nothing_and_never_saves_a_state_ahead(
    tmp_path: Path,
    start_flows_api_service: Callable[..., Service],
    bigquery_emulator: Service,
    bq_client: bigquery.Client,
) -> None:
    seed = int(os.environ.get("KILL_LOOP_SEED") or random.SystemRandom().randrange(10**6))
    db = generate_db(tmp_path / "flows.db", 8_000, seed=seed % 1000)
    api = start_flows_api_service(db)
    lanes = make_lanes(tmp_path, SHORT, ["pipe", "meltano"])
    loop = KillLoop(db, api.url, bigquery_emulator.url, bq_client, lanes, seed, append_rows=3_000)
    try:
        summary = loop.run(KILLS)
    finally:
        clean_up(lanes, bq_client)
    print(summary.report())

    assert summary.ok, f"KILL_LOOP_SEED={seed}\n{summary.report()}"
    assert summary.total_kills >= KILLS
    assert set(summary.kills_by_lane) == {"pipe", "meltano"}
    assert summary.kills[("target", "after-merge")] >= 1, summary.report()
    assert {moment for _, moment in summary.kills} >= set(MOMENTS) - {"early", "random"}
    assert summary.state_checks >= summary.total_kills
    assert summary.rounds >= 4


# Two rounds of kills in the Cloud Storage lane, at the moments it adds or changes:
# during an upload, between the upload and the load, between the load and the MERGE,
# between the MERGE and the STATE (the long loop adds early, random and tap-page kills).
GCS_ROUNDS = (
    (("target", "after-merge"), ("both", "upload-held"), ("target", "uploaded-held")),
    (("target", "merge-held"), ("target", "upload-held"), ("both", "uploaded-held")),
)


@pytest.mark.timeout(600)
def test_short_gcs_kill_loop_loses_no_row_and_no_object_of_a_committed_batch(
    tmp_path: Path,
    start_flows_api_service: Callable[..., Service],
    bigquery_emulator: Service,
    bq_client: bigquery.Client,
    gcs_server: Service,
    gcs_client: storage.Client,
) -> None:
    seed = int(os.environ.get("KILL_LOOP_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    db = generate_db(tmp_path / "flows.db", 8_000, seed=seed % 1000)
    api = start_flows_api_service(db)
    [lane] = make_lanes(tmp_path, SHORT, ["gcs"])  # gcs_keep_objects: true
    loop = KillLoop(
        db, api.url, bigquery_emulator.url, bq_client, [lane], seed,
        append_rows=3_000, gcs_url=gcs_server.url,
    )  # fmt: skip
    print(f"gcs kill-loop seed {seed} (KILL_LOOP_SEED={seed} repeats the positions)")
    number, started = 0, time.monotonic()
    try:
        for kills in GCS_ROUNDS:
            bookmarks = []
            for victim, moment in kills:
                number += 1
                spec = KillSpec(number, lane.name, victim, moment, rng.random())
                checks = loop.kill_run(lane, spec)
                bookmarks += [check.bookmark for check in checks if check.bookmark is not None]
            loop.finish_round(lane, bookmarks)
        foreign_loads = loads_of_other_runs(bq_client, lane)
        rebuilt = rebuild_into(lane, bigquery_emulator.url, gcs_server.url, "flows_rebuilt")
        table, from_archive = (
            table_figures(bq_client, f"{lane.dataset}.{name}")
            for name in ("flows", "flows_rebuilt")
        )
    finally:
        clean_up([lane], bq_client, gcs_client)
    summary = loop.summary
    summary.seconds, summary.source_rows = time.monotonic() - started, rows_from(db, None)
    print(summary.report())

    assert summary.ok, f"KILL_LOOP_SEED={seed}\n{summary.report()}"
    assert summary.total_kills == number == 6, summary.report()
    assert {moment for _, moment in summary.kills} == {
        "upload-held", "uploaded-held", "merge-held", "after-merge",
    }  # fmt: skip
    assert summary.archive_checks == 6
    assert summary.archive_missing == 0
    assert foreign_loads == []  # no rerun loaded what a killed run left in the bucket
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert from_archive == table  # the archive alone rebuilds the table (checked exact)


# Two rounds in the dedup_view lane: between a load into flows_raw and its STATE (twice),
# while a load is held, at a tap page and at a random moment.
DEDUP_ROUNDS = (
    (("target", "after-load"), ("both", "load-held"), ("tap", "tap-page")),
    (("target", "random"), ("target", "after-load")),
)


@pytest.mark.timeout(600)
def test_short_dedup_view_kill_loop_leaves_the_view_exact_and_compaction_keeps_it(
    tmp_path: Path,
    start_flows_api_service: Callable[..., Service],
    bigquery_emulator: Service,
    bq_client: bigquery.Client,
) -> None:
    seed = int(os.environ.get("KILL_LOOP_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    db = generate_db(tmp_path / "flows.db", 8_000, seed=seed % 1000)
    api = start_flows_api_service(db)
    [lane] = make_lanes(tmp_path, SHORT, ["dedup_view"])
    loop = KillLoop(db, api.url, bigquery_emulator.url, bq_client, [lane], seed, append_rows=3_000)
    print(f"dedup_view kill-loop seed {seed} (KILL_LOOP_SEED={seed} repeats the positions)")
    number, started = 0, time.monotonic()
    try:
        for kills in DEDUP_ROUNDS:
            bookmarks = []
            for victim, moment in kills:
                number += 1
                spec = KillSpec(number, lane.name, victim, moment, rng.random())
                checks = loop.kill_run(lane, spec)
                bookmarks += [check.bookmark for check in checks if check.bookmark is not None]
            verdict = loop.finish_round(lane, bookmarks)
        view, raw = (
            table_figures(bq_client, f"{lane.dataset}.{name}") for name in ("flows", "flows_raw")
        )
        compact = subprocess.run(
            [str(BIN / "target-bigquery-lite"), "compact", "--config",
             str(lane.workdir / "target.json"), "--stream", "flows"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        compacted = (
            table_figures(bq_client, f"{lane.dataset}.{name}") for name in ("flows", "flows_raw")
        )
        view_after, raw_after = compacted
    finally:
        clean_up([lane], bq_client)
    summary = loop.summary
    summary.seconds, summary.source_rows = time.monotonic() - started, rows_from(db, None)
    print(summary.report())

    assert summary.ok, (
        f"KILL_LOOP_SEED={seed}\n{summary.report()}"
    )  # the view: 0 lost, 0 duplicated
    assert summary.total_kills >= 4, summary.report()
    assert {"after-load", "load-held", "tap-page"} <= {m for _, m in summary.kills}
    assert summary.kills[("target", "after-load")] >= 1
    assert verdict.exact
    assert raw.rows > view.rows == view.distinct_ids  # the reruns loaded rows twice...
    assert compact.returncode == 0, compact.stderr  # ...which compaction removes
    assert view_after == view
    assert raw_after == view


def mutant(path: Path, source: str) -> Path:
    """A Python executable at `path` (named like the real one, so the loop finds its PID)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(0o755)
    return path


EARLY_STATE_TARGET = '''"""The target with a planted bug: a batch is committed once submitted."""
import sys

from target_bigquery_lite.cli import main
from target_bigquery_lite.state import StateTracker

submitted = StateTracker.submitted


def one_batch_early(self, end_seq):
    submitted(self, end_seq)
    self.committed(end_seq)


StateTracker.submitted = one_batch_early
sys.exit(main())
'''


def test_the_checks_catch_a_target_that_emits_its_state_one_batch_early(
    tmp_path: Path,
    start_flows_api_service: Callable[..., Service],
    bigquery_emulator: Service,
    bq_client: bigquery.Client,
) -> None:
    db = generate_db(tmp_path / "flows.db", 15_000, seed=8)
    api = start_flows_api_service(db)
    target = mutant(tmp_path / "mutant" / "target-bigquery-lite", EARLY_STATE_TARGET)
    lane = Lane("pipe", tmp_path / "pipe", "kill_mutant_target", Sizes(), target_command=target)
    loop = KillLoop(db, api.url, bigquery_emulator.url, bq_client, [lane], seed=0)
    try:
        # batch 3 of 5 is loaded into staging; its MERGE is held, so it is not committed
        checks = loop.kill_run(lane, KillSpec(1, "pipe", "target", "merge-held", 0.5))
    finally:
        clean_up([lane], bq_client)

    assert loop.summary.total_kills == 1
    state_file, printed = checks
    assert not state_file.ahead  # run-pipe.sh keeps no state from a killed target...
    assert printed.ahead  # ...but `> state-out.jsonl` would hold a state past the data
    assert printed.bookmark is not None
    assert printed.table_max_time is not None
    assert printed.missing_below > 0
    assert loop.summary.states_ahead == 1
    assert not loop.summary.ok


EXCLUSIVE_RESUME_TAP = f'''"""The tap with a planted off-by-one: it resumes after its bookmark."""
import json
import os
import sys
import tempfile

args = sys.argv[1:]
if "--state" in args:
    at = args.index("--state") + 1
    with open(args[at]) as saved:
        state = json.load(saved)
    state["bookmarks"]["flows"]["replication_key_value"] += 1
    handle, args[at] = tempfile.mkstemp(suffix=".json")
    os.write(handle, json.dumps(state).encode())
    os.close(handle)
os.execv({str(BIN / "tap-flows")!r}, [{str(BIN / "tap-flows")!r}, *args])
'''


def test_the_checks_catch_a_tap_that_resumes_one_second_after_its_bookmark(
    tmp_path: Path,
    start_flows_api_service: Callable[..., Service],
    bigquery_emulator: Service,
    bq_client: bigquery.Client,
) -> None:
    db = generate_db(tmp_path / "flows.db", 6_000, seed=9)
    api = start_flows_api_service(db)
    tap = mutant(tmp_path / "mutant" / "tap-flows", EXCLUSIVE_RESUME_TAP)
    lane = Lane("pipe", tmp_path / "pipe", "kill_mutant_tap", Sizes(), tap_command=tap)
    loop = KillLoop(db, api.url, bigquery_emulator.url, bq_client, [lane], seed=0)
    try:
        first = loop.finish_round(lane, [])  # a backfill; then rows arrive at its last second
        second = loop.finish_round(lane, [])  # resuming after that second loses them
    finally:
        clean_up([lane], bq_client)

    assert first.exact
    assert not second.exact
    assert second.lost > 0
    assert second.lost == second.source.rows - second.table.rows
    assert loop.summary.lost == second.lost
    assert not loop.summary.ok
