"""The short kill-loop (`make test`), and proof that its checks catch the bugs they are for.

The loop itself is `tests/reliability/kill_loop.py`; `make reliability KILLS=200` runs the
long one. Set KILL_LOOP_SEED to repeat a loop's plan, KILL_LOOP_KILLS to change its length.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from dev_services.process import Service
from google.cloud import bigquery

from tests.conftest import generate_db
from tests.reliability.kill_loop import MOMENTS, KillLoop, KillSpec, clean_up, make_lanes
from tests.reliability.pipeline import BIN, Lane, Sizes

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
