"""Hostile servers (issue 12): rows out of `(time, id)` order fail the run, never vanish."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .fake_api import fake_api, flows_rows, swapped
from .tap_process import run_tap

ROWS = flows_rows(300)


def batch_config(root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    return {
        "encoding": {"format": "jsonl", "compression": "none"},
        "storage": {"root": root.as_uri(), "prefix": "flows-"},
        "batch_size": 100,
    }


@pytest.mark.parametrize("batch", [False, True], ids=["record", "batch"])
# Both swapped rows in one page: a swap across a page boundary cannot be seen by any
# client (the next page asks for rows after the later one; the server omits the other).
@pytest.mark.parametrize(("page_size", "index"), [(2, 4), (2, 120), (50, 70), (50, 148), (1000, 0)])
def test_rows_out_of_order_fail_the_run_before_a_state_past_them(
    tmp_path: Path, page_size: int, index: int, batch: bool
) -> None:
    later, earlier = ROWS[index + 1], ROWS[index]
    settings = {"page_size": page_size}
    if batch:
        settings["batch_config"] = batch_config(tmp_path / "b")
    with fake_api(swapped(ROWS, index)) as (url, _):
        run = run_tap(tmp_path, {"api_url": url, **settings}, timeout=60)

    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    message = run.stderr.splitlines()[-1]
    assert "| ERROR" in message
    assert "out of (time, id) order" in message
    assert f"row (time, id) ({earlier['time']}, {earlier['id']}) came after " in message
    assert f"after ({later['time']}, {later['id']})" in message
    assert "(request {" in message
    # Every STATE is at or before the last row served in order.
    in_order_time = ROWS[index - 1]["time"] if index else None
    for state in run.states:
        bookmark = state.get("bookmarks", {}).get("flows", {}).get("replication_key_value")
        assert bookmark is None or bookmark <= in_order_time
    if not batch:
        ids = [r["id"] for r in run.records]
        assert ids == [r["id"] for r in ROWS[:index]][: len(ids)]
    else:
        sent = [m for m in run.messages if m["type"] == "BATCH"]
        assert len(sent) == index // 100


@pytest.mark.parametrize("batch", [False, True], ids=["record", "batch"])
def test_a_repeat_of_the_last_row_is_dropped_with_a_warning(tmp_path: Path, batch: bool) -> None:
    served = [*ROWS[:10], ROWS[9], ROWS[9], *ROWS[10:]]
    settings = {"page_size": 50}
    if batch:
        settings["batch_config"] = batch_config(tmp_path / "b")
    with fake_api(served) as (url, _):
        run = run_tap(tmp_path, {"api_url": url, **settings}, timeout=60)

    assert run.returncode == 0, run.stderr
    assert "Dropped 2 repeats of the last row emitted" in run.stderr
    if not batch:
        assert run.records == ROWS
    assert run.final_bookmark == ROWS[-1]["time"]


@pytest.mark.parametrize("batch", [False, True], ids=["record", "batch"])
def test_a_body_dripping_a_byte_at_a_time_is_retried_then_fails_within_the_deadline(
    tmp_path: Path, batch: bool
) -> None:
    settings = {"request_timeout": 5, "request_deadline_seconds": 2, "max_retries": 1}
    if batch:
        settings["batch_config"] = batch_config(tmp_path / "b")
    started = time.monotonic()
    with fake_api(drip_seconds=0.5) as (url, paths):
        run = run_tap(tmp_path, {"api_url": url, **settings}, timeout=60)
    elapsed = time.monotonic() - started

    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert len(paths) == 2
    assert elapsed < 15
    assert "took longer than request_deadline_seconds=2); retry 1 of 1" in run.stderr
    message = run.stderr.splitlines()[-1]
    assert "| ERROR" in message
    assert "failed 2 times in a row" in message
    assert "request_deadline_seconds=2" in message
    assert not [m for m in run.messages if m["type"] in {"RECORD", "BATCH"}]
