"""Resilience: a fault-injecting proxy between the tap and a real flows-api."""

from __future__ import annotations

from pathlib import Path

import pytest
from dev_services.fault_proxy import Fault, FaultProxy

from .conftest import ROWS, db_rows
from .tap_process import TapRun, run_tap

PAGE = 3_000


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory, flows_api_url: str) -> TapRun:
    run = run_tap(tmp_path_factory.mktemp("clean"), {"api_url": flows_api_url, "page_size": PAGE})
    assert run.returncode == 0, run.stderr
    assert len(run.records) == ROWS
    return run


def run_through(proxy: FaultProxy, workdir: Path, **settings: object) -> TapRun:
    with proxy:
        return run_tap(workdir, {"api_url": proxy.url, "page_size": PAGE, **settings})


def position_in_page(records: list[dict], after_id: int) -> int:
    """How many rows of its page come up to and including `after_id`."""
    index = next(i for i, r in enumerate(records) if r["id"] == after_id)
    return index % PAGE + 1


def test_cuts_5xx_and_429_leave_the_output_identical_to_a_clean_run(
    tmp_path: Path, flows_api_url: str, clean_run: TapRun
) -> None:
    plan = [
        None,
        Fault.cut_after_bytes(50_000),
        Fault.status(500),
        Fault.cut_after_bytes(120_000, reset=True),
        Fault.status(429, retry_after=1),
        Fault.truncate_mid_line(after_lines=1_234),
        Fault.status(503),
    ]
    proxy = FaultProxy(flows_api_url, plan)

    run = run_through(proxy, tmp_path, max_retries=2)

    assert run.returncode == 0, run.stderr
    assert run.records == clean_run.records
    assert run.states == clean_run.states  # resumed requests keep pages aligned
    requests = proxy.requests
    assert [r.fault for r in requests[: len(plan)]] == plan
    faults = len([f for f in plan if f is not None])
    assert len(requests) == ROWS // PAGE + 1 + faults  # a clean run's requests + 1 per fault
    assert requests[1].body_bytes == 50_000

    # After each cut (plain, reset, mid-line), the tap asked for the rest of the page,
    # strictly after the last row it had emitted...
    for cut, resumed in ((1, 2), (3, 4), (5, 6)):
        assert requests[resumed].query["after_id"] != requests[cut].query.get("after_id")
        done = position_in_page(clean_run.records, int(requests[resumed].query["after_id"]))
        assert int(requests[resumed].query["limit"]) == PAGE - done
    # ...and after an error status (500, 429, 503) sent the same request again.
    for failed in (2, 4, 6):
        assert requests[failed + 1].query == requests[failed].query
    # Retry-After: 1 was honoured.
    assert requests[5].started - requests[4].started >= 1.0


def test_a_body_slower_than_request_timeout_is_retried(
    tmp_path: Path, flows_api_url: str, clean_run: TapRun
) -> None:
    proxy = FaultProxy(flows_api_url, [Fault.slow(chunk_bytes=4_096, delay=2.0)])

    run = run_through(proxy, tmp_path, request_timeout=1)

    assert run.returncode == 0, run.stderr
    assert run.records == clean_run.records
    assert "timed out" in run.stderr
    assert proxy.requests[1].query == proxy.requests[0].query


def test_a_repeat_of_the_last_row_is_dropped_not_emitted_twice(
    tmp_path: Path, flows_api_url: str, clean_run: TapRun
) -> None:
    proxy = FaultProxy(flows_api_url, [None, Fault.duplicate_lines(after_lines=100, count=1)])

    run = run_through(proxy, tmp_path)

    assert run.returncode == 0, run.stderr
    assert run.records == clean_run.records
    assert "Dropped 1 repeats of the last row emitted" in run.stderr


def test_rows_sent_again_after_later_ones_fail_the_run(
    tmp_path: Path, flows_api_url: str, clean_run: TapRun
) -> None:
    proxy = FaultProxy(flows_api_url, [None, Fault.duplicate_lines(after_lines=100, count=40)])

    run = run_through(proxy, tmp_path)

    assert run.returncode == 1
    assert "out of (time, id) order" in run.stderr.splitlines()[-1]
    assert "Traceback" not in run.stderr
    assert run.final_bookmark == clean_run.records[PAGE - 1]["time"]


def test_an_empty_answer_ends_the_run_early_but_the_next_run_catches_up(
    tmp_path: Path, flows_api_url: str, flows_db: Path
) -> None:
    proxy = FaultProxy(flows_api_url, [None, Fault.empty()])
    early = run_through(proxy, tmp_path / "early")
    assert early.returncode == 0, early.stderr
    all_rows = db_rows(flows_db)
    assert early.records == all_rows[:PAGE]
    assert early.final_bookmark == all_rows[PAGE - 1]["time"]

    later = run_tap(
        tmp_path / "later",
        {"api_url": flows_api_url, "page_size": PAGE},
        state=early.states[-1],
    )
    assert later.records == [r for r in all_rows if r["time"] >= early.final_bookmark]


def test_exhausted_retries_fail_with_a_clear_message(tmp_path: Path, flows_api_url: str) -> None:
    proxy = FaultProxy(flows_api_url, [Fault.status(503)] * 3)

    run = run_through(proxy, tmp_path, max_retries=2)

    assert run.returncode == 1
    assert len(proxy.requests) == 3
    assert run.records == []
    last_line = run.stderr.strip().splitlines()[-1]
    assert "failed 3 times in a row" in last_line
    assert "max_retries=2" in last_line
    assert "HTTP 503" in last_line
    assert "Traceback" not in run.stderr


def test_a_line_that_is_not_json_fails_with_its_number_and_no_half_record(
    tmp_path: Path, flows_api_url: str, clean_run: TapRun
) -> None:
    proxy = FaultProxy(flows_api_url, [None, Fault.garbage_line(after_lines=10)])

    run = run_through(proxy, tmp_path)

    assert run.returncode == 1
    assert len(proxy.requests) == 2  # not retried: the same line would come back
    assert "line 11 of the response is not valid JSON: b'<html>502 Bad Gateway</html>'" in (
        run.stderr
    )
    assert "Traceback" not in run.stderr
    # Whole rows only, none from the broken chunk, and no STATE past what was emitted.
    assert run.records == clean_run.records[:PAGE]
    assert run.final_bookmark == clean_run.records[PAGE - 1]["time"]


@pytest.mark.parametrize(
    ("api_key", "message"),
    [(None, "set the api_key setting"), ("wrong", "check the api_key setting")],
)
def test_a_refused_key_fails_at_once_naming_api_key(
    tmp_path: Path, start_flows_api_service, flows_db: Path, api_key: str | None, message: str
) -> None:
    service = start_flows_api_service(flows_db, api_key="right-key")
    proxy = FaultProxy(service.url)
    settings = {} if api_key is None else {"api_key": api_key}

    run = run_through(proxy, tmp_path, **settings)

    assert run.returncode == 1
    assert len(proxy.requests) == 1  # no retry
    last_line = run.stderr.strip().splitlines()[-1]
    assert "HTTP 401" in last_line
    assert message in last_line
    assert "Traceback" not in run.stderr

    with FaultProxy(service.url) as right:
        ok = run_tap(
            tmp_path / "right",
            {"api_url": right.url, "api_key": "right-key", "user_agent": "flows-probe/2"},
        )
    assert ok.returncode == 0, ok.stderr
    assert len(ok.records) == ROWS
    assert all(r.status == 200 for r in right.requests)
    assert right.requests[0].headers["Authorization"] == "Bearer right-key"
    assert right.requests[0].headers["User-Agent"] == "flows-probe/2"
    assert right.requests[0].headers["Accept"] == "application/x-ndjson"
