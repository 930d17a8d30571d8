"""Pipe mode without Meltano (scripts/run-pipe.sh): state in a file, replaced only on success."""

from __future__ import annotations

import fcntl
import json
import subprocess
from pathlib import Path

from dev_services.flows_check import source_figures, table_figures
from dev_services.process import free_port

from tests.conftest import ROOT, append_rows, bookmark, generate_db, write_json

RUN_PIPE = ROOT / "scripts" / "run-pipe.sh"


def run_pipe(
    tap: Path, target: Path, state: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(RUN_PIPE),
            "--tap-config",
            str(tap),
            "--target-config",
            str(target),
            "--state",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_pipe_backfill_incremental_and_a_failing_target_keeps_the_state(
    tmp_path: Path, start_flows_api_service, bigquery_emulator, bq_client, bq_dataset
) -> None:
    db = generate_db(tmp_path / "flows.db", 20_000, seed=31)
    api = start_flows_api_service(db, api_key="pipe-key")
    tap = write_json(
        tmp_path / "tap.json", {"api_url": api.url, "api_key": "pipe-key", "page_size": 6000}
    )
    target_config = {
        "project": bq_client.project,
        "dataset": bq_dataset,
        "api_endpoint": bigquery_emulator.url,
        "batch_max_rows": 8000,
        "staging_dir": str(tmp_path / "staging"),
    }
    target = write_json(tmp_path / "target.json", target_config)
    state = tmp_path / "state.json"
    table = f"{bq_dataset}.flows"

    first = run_pipe(tap, target, state)
    assert first.returncode == 0, first.stderr[-3000:]
    assert table_figures(bq_client, table) == source_figures(db)
    assert bookmark(json.loads(state.read_text())) == source_figures(db).max_time
    assert not list(tmp_path.glob("state.json.*.*")), "no temporary files left behind"

    append_rows(db, 3_000)
    second = run_pipe(tap, target, state)
    assert second.returncode == 0, second.stderr[-3000:]
    assert table_figures(bq_client, table) == source_figures(db)
    saved = state.read_text()
    assert bookmark(json.loads(saved)) == source_figures(db).max_time

    append_rows(db, 2_000)
    broken = write_json(
        tmp_path / "broken.json",
        {**target_config, "api_endpoint": f"http://127.0.0.1:{free_port()}"},
    )
    failed = run_pipe(tap, broken, state)
    assert failed.returncode != 0
    assert "state file" in failed.stderr
    assert "left unchanged" in failed.stderr
    assert state.read_text() == saved


def test_a_second_run_while_one_holds_the_lock_does_not_start(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    tap = write_json(tmp_path / "tap.json", {"api_url": "http://127.0.0.1:9"})
    target = write_json(tmp_path / "target.json", {"project": "p", "dataset": "d"})
    with open(f"{state}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = run_pipe(tap, target, state, timeout=60)
    assert result.returncode == 75
    assert "another run holds" in result.stderr
