"""Partitioned parallel backfill (scripts/backfill.py): N pipes MERGE into one table.

BigQuery may abort one of two concurrent MERGEs into a table ("Could not serialize access
... due to concurrent update"); the emulator serializes them and never does, so the error
is injected through `BigQueryProxy`. A partition killed mid-run must be the only one a
rerun starts again, from its own saved state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dev_services.bigquery_proxy import BigQueryProxy, Rule
from dev_services.flows_check import source_figures, table_figures

from tests.conftest import ROOT, generate_db, write_json

BACKFILL = ROOT / "scripts" / "backfill.py"
ROWS = 30_000
CONCURRENT_UPDATE = "Could not serialize access to table flows due to concurrent update"


def backfill(workdir: Path, partitions: int, db: Path) -> list[str]:
    """The command line of a backfill over the whole source, checked against `db`."""
    return [
        sys.executable, str(BACKFILL),
        "--partitions", str(partitions),
        "--tap-config", str(workdir / "tap.json"),
        "--target-config", str(workdir / "target.json"),
        "--state-dir", str(workdir / "state"),
        "--check-db", str(db),
    ]  # fmt: skip


def configure(workdir: Path, api_url: str, endpoint: str, project: str, dataset: str) -> None:
    """Small pages and batches: several states and MERGEs per partition."""
    write_json(workdir / "tap.json", {"api_url": api_url, "page_size": 2_000})
    write_json(
        workdir / "target.json",
        {
            "project": project,
            "dataset": dataset,
            "api_endpoint": endpoint,
            "batch_max_rows": 4_000,
            "staging_dir": str(workdir / "staging"),
        },
    )


def test_concurrent_update_errors_are_retried_and_the_table_is_exact(
    tmp_path: Path, start_flows_api_service, bigquery_emulator, bq_client, bq_dataset
) -> None:
    db = generate_db(tmp_path / "flows.db", ROWS, seed=41)
    api = start_flows_api_service(db)
    with BigQueryProxy(bigquery_emulator.url) as proxy:
        aborted = proxy.add(
            Rule("POST", r"/jobs", body=r"MERGE", action="fail", message=CONCURRENT_UPDATE, times=3)
        )
        configure(tmp_path, api.url, proxy.url, bq_client.project, bq_dataset)

        done = subprocess.run(
            backfill(tmp_path, 3, db), capture_output=True, text=True, timeout=300, check=False
        )

    assert done.returncode == 0, done.stdout + done.stderr
    assert aborted.hits == 3
    assert sum(call.action == "failed" for call in proxy.requests) == 3
    assert "all 3 partition(s) done" in done.stdout
    assert "OK: the table holds exactly the source rows" in done.stdout
    assert table_figures(bq_client, f"{bq_dataset}.flows") == source_figures(db)
    logs = "".join(path.read_text() for path in (tmp_path / "state").glob("*.log"))
    assert logs.count("concurrent update") >= 3  # each abort was logged, then retried


def test_a_killed_partition_is_the_only_one_rerun_and_resumes_from_its_state(
    tmp_path: Path, start_flows_api_service, bigquery_emulator, bq_client, bq_dataset
) -> None:
    db = generate_db(tmp_path / "flows.db", ROWS, seed=43)
    api = start_flows_api_service(db)
    state = tmp_path / "state"
    with BigQueryProxy(bigquery_emulator.url) as proxy:
        # Whichever partition MERGEs its second batch first is held there: its first
        # batch is committed and its state saved; then it is killed.
        held = proxy.add(
            Rule("POST", r"/jobs", body=r"MERGE.*_bqlite_stage_\w+_000002_flows", action="hold")
        )
        configure(tmp_path, api.url, proxy.url, bq_client.project, bq_dataset)
        first = subprocess.Popen(
            backfill(tmp_path, 2, db), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert held.matched.wait(120), "no partition reached its second MERGE"
        deadline = time.monotonic() + 120
        while len(list(state.glob("*.done"))) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        (victim_pid,) = state.glob("*.pid")
        victim = victim_pid.name.removesuffix(".pid")
        saved = json.loads((state / f"{victim}.state.json").read_text())
        bookmark = saved["bookmarks"]["flows"]["replication_key_value"]
        os.killpg(int(victim_pid.read_text()), signal.SIGKILL)
        held.release()
        out, err = first.communicate(timeout=120)

    assert first.returncode == 1, out + err
    assert f"[{victim.replace('-', ', ')}): FAILED" in err
    assert not (state / f"{victim}.done").exists()
    assert int(victim.split("-")[0]) < bookmark

    configure(tmp_path, api.url, bigquery_emulator.url, bq_client.project, bq_dataset)
    rerun = subprocess.run(
        backfill(tmp_path, 2, db), capture_output=True, text=True, timeout=300, check=False
    )

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert rerun.stdout.count("done in an earlier run, skipped") == 1
    assert f"resuming from its state (bookmark {bookmark})" in rerun.stdout
    assert "OK: the table holds exactly the source rows" in rerun.stdout
    assert table_figures(bq_client, f"{bq_dataset}.flows") == source_figures(db)
