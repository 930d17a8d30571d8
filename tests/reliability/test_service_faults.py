"""Service faults under a running pipeline (pipe mode): BigQuery going away, flows-api
restarting mid-stream, a staging disk that is full or unusable.

Each must end in a clear error and a non-zero exit with nothing committed lost and no state
ahead of the data, after which a rerun recovers exactly; or, where the fault is brief enough
for the retries (a restart), be absorbed within the run.
"""

from __future__ import annotations

import os
import random
import re
import resource
import signal
from collections.abc import Callable
from pathlib import Path

from dev_services.bigquery_emulator import emulator_client
from dev_services.flows_api import start_flows_api
from dev_services.flows_check import table_figures
from dev_services.process import Service, free_port
from google.cloud import bigquery

from tests.conftest import generate_db
from tests.reliability.pipeline import (
    Lane,
    Sizes,
    check_state,
    grow_source,
    sample_ids,
    verify_exact,
    wait_for_exit,
    wait_until,
)

ROWS = 15_000


def assert_states_behind(lane: Lane, db: Path, client: bigquery.Client) -> None:
    for where, state in lane.states_to_check().items():
        check = check_state(db, client, lane.table, where, state)
        assert not check.ahead, check.describe()
        assert check.duplicates == 0, check.describe()


def assert_exact(lane: Lane, db: Path, client: bigquery.Client) -> None:
    verdict = verify_exact(db, client, lane.table, sample_ids(db, random.Random(1), []))
    assert verdict.exact, verdict.describe()
    assert lane.saved_state() is not None
    assert lane.saved_state()["bookmarks"]["flows"]["replication_key_value"] == (
        verdict.source.max_time
    )


def test_bigquery_gone_mid_run_fails_clearly_and_coming_back_mid_run_is_absorbed(
    tmp_path: Path,
    start_flows_api_service: Callable[..., Service],
    restartable_emulator: Callable[[], Service],
) -> None:
    db = generate_db(tmp_path / "flows.db", ROWS, seed=41)
    api = start_flows_api_service(db)
    emulator = restartable_emulator()
    lane = Lane("pipe", tmp_path / "pipe", "service_faults", Sizes())

    # Stopped after the first commit and not back before the target's retries run out.
    run = lane.start(api.url, emulator.url, max_retries=2)
    assert wait_until(lambda: lane.printed_state() is not None or run.poll() is not None, 120)
    assert run.poll() is None, "the run ended before the emulator could be stopped"
    emulator.stop()
    code = wait_for_exit(run, timeout=120)
    log = lane.log_of_last_run().read_text()
    assert code == 1, log[-3000:]
    assert re.search(r"ERROR target-bigquery-lite: .* failed after 3 tries: ConnectionError", log)
    assert "run-pipe: target-bigquery-lite failed (exit 1); state file" in log
    assert "Traceback" not in log
    assert lane.saved_state() is None  # run-pipe.sh kept no state from the failed run

    emulator = restartable_emulator()  # same port, same data: what was committed is still there
    client = emulator_client(emulator.url)
    assert_states_behind(lane, db, client)
    assert table_figures(client, lane.table).rows >= lane.sizes.batch_max_rows

    # Stopped again after the next commit, back while the target is still retrying.
    run = lane.start(api.url, emulator.url, max_retries=6)
    printed = lane.printed_log.read_text().count("\n")
    assert wait_until(lambda: lane.printed_log.read_text().count("\n") > printed, 120)
    emulator.stop()
    emulator = restartable_emulator()
    code = wait_for_exit(run, timeout=180)
    log = lane.log_of_last_run().read_text()
    assert code == 0, log[-3000:]
    assert "transient error" in log  # the target saw BigQuery gone and retried
    assert "Traceback" not in log
    assert_exact(lane, db, emulator_client(emulator.url))


def test_flows_api_crashed_and_restarted_mid_run_is_absorbed_by_the_tap_s_retries(
    tmp_path: Path, bigquery_emulator: Service, bq_client: bigquery.Client, bq_dataset: str
) -> None:
    """SIGKILL flows-api while the tap is reading its pages, start it again on the same port.

    Loopback socket buffers (autotuned up to 32 MB here) hold a whole page, so the crash
    lands between the tap's requests rather than inside a body; bodies cut mid-way are the
    fault proxy's cases (test_proxy_faults.py).
    """
    db = generate_db(tmp_path / "flows.db", ROWS, seed=42)
    port = free_port()
    api = start_flows_api(db, tmp_path / "api-1.log", port=port, extra_args=("--access-log",))
    sizes = Sizes(page_size=500, batch_max_rows=2_500)  # 30 pages: the crash lands among them
    lane = Lane("pipe", tmp_path / "pipe", bq_dataset, sizes)
    access_log = tmp_path / "api-1.log"
    try:
        run = lane.start(api.url, bigquery_emulator.url)
        log = lane.workdir / "run-001.log"
        # the tap's progress, not the target's: on a busy machine the tap reads ahead
        assert wait_until(
            lambda: (
                len(re.findall(r"[?&]since=", access_log.read_text())) >= 2
                or run.poll() is not None
            ),
            60,
        )
        assert run.poll() is None, "the run ended before flows-api could be restarted"
        os.killpg(api.pid, signal.SIGKILL)
        api.stop()
        api = start_flows_api(db, tmp_path / "api-2.log", port=port, extra_args=("--access-log",))
        code = wait_for_exit(run, timeout=180)
    finally:
        api.stop()
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert re.search(r"Request .* failed .*Connection refused.*; retry 1 of \d+", text), text
    assert "Traceback" not in text
    served = re.findall(r"[?&]since=(\d+)&after_id=(\d+)", (tmp_path / "api-2.log").read_text())
    assert served, "the restarted flows-api served the rest of the run"
    assert_exact(lane, db, bq_client)


def limit_file_size() -> None:
    """In the child: no file may grow beyond 256 KiB (a write past it fails with EFBIG)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


def test_a_full_or_unusable_staging_dir_fails_clearly_and_a_rerun_is_exact(
    tmp_path: Path,
    start_flows_api_service: Callable[..., Service],
    bigquery_emulator: Service,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    db = generate_db(tmp_path / "flows.db", 9_000, seed=43)
    api = start_flows_api_service(db)
    lane = Lane("pipe", tmp_path / "pipe", bq_dataset, Sizes())
    assert wait_for_exit(lane.start(api.url, bigquery_emulator.url)) == 0
    assert_exact(lane, db, bq_client)
    grow_source(db, random.Random(3), 6_000)
    saved, committed = lane.saved_state(), table_figures(bq_client, lane.table)

    # A staging file that cannot grow: the file size limit stands in for a full disk.
    code = wait_for_exit(lane.start(api.url, bigquery_emulator.url, preexec=limit_file_size))
    log = lane.log_of_last_run().read_text()
    assert code == 1, log[-3000:]
    staging = lane.staging_dir
    assert f"ERROR target-bigquery-lite: cannot write staging file {staging}/run-" in log
    assert "File too large (errno 27); a file size limit (ulimit -f) stopped it" in log
    assert "Traceback" not in log

    # A staging_dir that cannot be a folder: its parent is a regular file.
    (tmp_path / "a-file").write_text("not a folder")
    lane.staging_dir = tmp_path / "a-file" / "staging"
    code = wait_for_exit(lane.start(api.url, bigquery_emulator.url))
    log = lane.log_of_last_run().read_text()
    assert code == 1, log[-3000:]
    assert f"cannot create the staging folder {lane.staging_dir}/run-" in log
    assert "Not a directory (errno 20); check the staging_dir setting" in log
    assert "Traceback" not in log

    assert lane.saved_state() == saved
    assert table_figures(bq_client, lane.table) == committed  # nothing lost, nothing half-done
    assert_states_behind(lane, db, bq_client)
    lane.staging_dir = tmp_path / "staging"
    assert wait_for_exit(lane.start(api.url, bigquery_emulator.url)) == 0
    assert_exact(lane, db, bq_client)
