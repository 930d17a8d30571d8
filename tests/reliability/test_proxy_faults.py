"""A fault-injecting proxy between the tap and flows-api, end to end into BigQuery.

`tap-flows | target-bigquery-lite` runs in pipe mode (scripts/run-pipe.sh) with the tap
pointed at `dev_services.fault_proxy.FaultProxy`, which breaks one request of the run (the
second page) in one way. Each case ends in exact recovery within the run, or in a clear
failure after which a rerun recovers; in every case no table row differs from its source
row in any column, and no saved or printed state is past missing data.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dev_services.fault_proxy import Fault, FaultProxy, ProxiedRequest
from dev_services.flows_api import start_flows_api
from dev_services.flows_check import source_figures, source_rows, table_rows
from dev_services.process import Service
from google.cloud import bigquery

from tests.conftest import generate_db
from tests.reliability.pipeline import (
    Lane,
    Sizes,
    check_state,
    sample_ids,
    verify_exact,
    wait_for_exit,
)

ROWS = 3_000
SIZES = Sizes(page_size=1_000, batch_max_rows=1_500)
CLEAN_REQUESTS = ROWS // SIZES.page_size + 1  # full pages, then one that comes back short


@dataclass(frozen=True)
class ProxyCase:
    """One fault on the tap's second request, and how the run must end."""

    name: str
    fault: Fault
    message: str
    exit_code: int = 0
    exact: bool = True
    retried: bool = True
    tap_settings: dict[str, object] = field(default_factory=dict)


CASES = [
    ProxyCase(
        "connection_reset_mid_body",
        Fault.cut_after_bytes(100_000, reset=True),
        "Connection reset by peer",
    ),
    ProxyCase("connection_closed_mid_body", Fault.cut_after_bytes(50_000), "failed ("),
    ProxyCase("http_500", Fault.status(500), "HTTP 500"),
    ProxyCase("http_503", Fault.status(503), "HTTP 503"),
    ProxyCase("http_429_with_retry_after", Fault.status(429, retry_after=2), "HTTP 429"),
    ProxyCase(
        "body_trickling_slower_than_the_timeout",
        Fault.slow(chunk_bytes=4_096, delay=2.0),
        "timed out",
        tap_settings={"request_timeout": 1},
    ),
    ProxyCase(
        "body_trickling_within_the_timeout",
        Fault.slow(chunk_bytes=8_192, delay=0.05),
        "done: 3000 records",
        retried=False,
    ),
    ProxyCase("body_truncated_mid_line", Fault.truncate_mid_line(after_lines=234), "failed ("),
    ProxyCase(
        "garbage_line",
        Fault.garbage_line(after_lines=10),
        "line 11 of the response is not valid JSON: b'<html>502 Bad Gateway</html>'",
        exit_code=1,
        exact=False,
        retried=False,  # the same line would come back: a clear stop, not a retry
    ),
    ProxyCase(
        "duplicated_rows",  # rows before the last one emitted: the API's order is broken
        Fault.duplicate_lines(after_lines=100, count=40),
        "the flows API sent rows out of (time, id) order",
        exit_code=1,
        exact=False,
        retried=False,
    ),
    ProxyCase("empty_200", Fault.empty(), "done: 1000 records", exact=False, retried=False),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Service]]:
    """One database and flows-api for every case (no case changes the source)."""
    folder = tmp_path_factory.mktemp("proxy-faults")
    db = generate_db(folder / "flows.db", ROWS, seed=51)
    api = start_flows_api(db, folder / "flows-api.log")
    yield db, api
    api.stop()


def assert_no_row_differs_and_no_state_is_ahead(
    lane: Lane, db: Path, client: bigquery.Client
) -> None:
    loaded = {row[0] for row in client.query(f"SELECT id FROM `{lane.table}`").result()}
    ids = sorted(loaded)
    assert table_rows(client, lane.table, ids) == source_rows(db, ids)
    for where, state in lane.states_to_check().items():
        check = check_state(db, client, lane.table, where, state)
        assert not check.ahead, check.describe()
        assert check.duplicates == 0


@dataclass(frozen=True)
class ProxyRun:
    """A case's run through the proxy: its lane, exit code, output and the proxy's record."""

    lane: Lane
    code: int | None
    log: str
    requests: list[ProxiedRequest]


def run_case(case: ProxyCase, folder: Path, api_url: str, bq_url: str) -> ProxyRun:
    """Run the pipeline once through a proxy that breaks the second request as planned."""
    lane = Lane("pipe", folder, f"proxy_{case.name}_{uuid.uuid4().hex[:6]}", SIZES)
    lane.tap_settings = {"max_retries": 3, **case.tap_settings}
    with FaultProxy(api_url, [None, case.fault]) as proxy:
        code = wait_for_exit(lane.start(proxy.url, bq_url), timeout=240)
    return ProxyRun(lane, code, lane.log_of_last_run().read_text(), list(proxy.requests))


@pytest.fixture(scope="module")
def proxy_runs(
    tmp_path_factory: pytest.TempPathFactory,
    source: tuple[Path, Service],
    bigquery_emulator: Service,
    bq_client: bigquery.Client,
) -> Iterator[dict[str, ProxyRun | BaseException]]:
    """Every case's run, three at a time (each with its own proxy, dataset and state)."""
    base = tmp_path_factory.mktemp("proxy-runs")
    _, api = source
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            case.name: pool.submit(run_case, case, base / case.name, api.url, bigquery_emulator.url)
            for case in CASES
        }
        runs: dict[str, ProxyRun | BaseException] = {}
        for name, future in futures.items():
            error = future.exception()
            runs[name] = error if error is not None else future.result()
    yield runs
    for run in runs.values():
        if isinstance(run, ProxyRun):
            bq_client.delete_dataset(run.lane.dataset, delete_contents=True, not_found_ok=True)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_a_fault_between_tap_and_api_never_corrupts_loses_or_runs_ahead(
    case: ProxyCase,
    proxy_runs: dict[str, ProxyRun | BaseException],
    source: tuple[Path, Service],
    bigquery_emulator: Service,
    bq_client: bigquery.Client,
) -> None:
    run = proxy_runs[case.name]
    if isinstance(run, BaseException):
        raise run
    db, api = source
    lane, code, log, requests = run.lane, run.code, run.log, run.requests

    assert code == case.exit_code, log[-3000:]
    assert case.message in log, log[-3000:]
    assert "Traceback" not in log
    assert requests[1].fault == case.fault
    assert_no_row_differs_and_no_state_is_ahead(lane, db, bq_client)
    if case.retried:
        assert "retry 1 of 3" in log
        assert int(requests[2].query["limit"]) <= int(requests[1].query["limit"])
        assert requests[2].started - requests[1].started >= (case.fault.retry_after or 0)
    if case.exact:
        assert len(requests) == CLEAN_REQUESTS + case.retried
    else:  # a clear stop, after which the next run catches up from the saved state
        assert lane.saved_state() is not None
        assert len(requests) == 2
        assert wait_for_exit(lane.start(api.url, bigquery_emulator.url)) == 0
    verdict = verify_exact(db, bq_client, lane.table, sample_ids(db, random.Random(2), []))
    assert verdict.exact, verdict.describe()
    state = lane.saved_state()
    assert state is not None
    assert state["bookmarks"]["flows"]["replication_key_value"] == source_figures(db).max_time
