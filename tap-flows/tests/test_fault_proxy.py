"""The fault proxy itself (dev_services.fault_proxy): each fault does what it says."""

from __future__ import annotations

import pytest
import requests
from dev_services.fault_proxy import Fault, FaultProxy

PATH = "/api/v1/stream/flows.json"


def get(proxy: FaultProxy, limit: int = 50) -> requests.Response:
    return requests.get(proxy.url + PATH, params={"limit": limit}, timeout=10)


def test_pass_through_and_recording(flows_api_url: str) -> None:
    direct = requests.get(flows_api_url + PATH, params={"limit": 50}, timeout=10)
    with FaultProxy(flows_api_url) as proxy:
        relayed = get(proxy)
    assert relayed.status_code == 200
    assert relayed.content == direct.content
    assert relayed.headers["Content-Type"] == direct.headers["Content-Type"]
    (request,) = proxy.requests
    assert (request.path, request.query, request.fault) == (PATH, {"limit": "50"}, None)
    assert request.headers["User-Agent"].startswith("python-requests/")
    assert request.status == 200
    assert request.body_bytes == len(direct.content)
    assert request.finished is not None
    assert request.finished >= request.started


def test_faults_are_applied_in_plan_order_then_requests_pass(flows_api_url: str) -> None:
    plan = [Fault.status(503), None, Fault.status(429, retry_after=2)]
    with FaultProxy(flows_api_url, plan) as proxy:
        statuses = [get(proxy).status_code for _ in range(4)]
        limited = proxy.requests[2]
    assert statuses == [503, 200, 429, 200]
    assert proxy.faults_applied() == [plan[0], plan[2]]
    assert limited.status == 429


def test_status_fault_sends_retry_after_and_a_json_error(flows_api_url: str) -> None:
    with FaultProxy(flows_api_url, [Fault.status(429, retry_after=3)]) as proxy:
        response = get(proxy)
    assert response.headers["Retry-After"] == "3"
    assert "planned HTTP 429" in response.json()["error"]


@pytest.mark.parametrize("reset", [False, True])
def test_cut_breaks_the_body_after_n_bytes(flows_api_url: str, reset: bool) -> None:
    proxy = FaultProxy(flows_api_url, [Fault.cut_after_bytes(3_000, reset=reset)])
    with proxy, pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(proxy, limit=1_000)
    assert proxy.requests[0].body_bytes == 3_000


def test_truncate_ends_the_body_cleanly_in_the_middle_of_a_line(flows_api_url: str) -> None:
    with FaultProxy(flows_api_url, [Fault.truncate_mid_line(after_lines=5)]) as proxy:
        body = get(proxy).content
    lines = body.split(b"\n")
    assert len(lines) == 6
    assert lines[-1]
    assert not lines[-1].endswith(b"}")


def test_line_faults_insert_garbage_and_repeat_rows(flows_api_url: str) -> None:
    plan = [Fault.garbage_line(after_lines=3, line=b"garbage"), Fault.duplicate_lines(4, 2)]
    with FaultProxy(flows_api_url, plan) as proxy:
        with_garbage = get(proxy, limit=6).content.splitlines()
        repeated = get(proxy, limit=6).content.splitlines()
    assert with_garbage[3] == b"garbage"
    assert len(with_garbage) == 7
    assert repeated[4:6] == repeated[2:4]
    assert len(repeated) == 8


def test_empty_and_slow_answers(flows_api_url: str) -> None:
    with FaultProxy(flows_api_url, [Fault.empty(), Fault.slow(100, 0.05)]) as proxy:
        empty = get(proxy)
        slow = get(proxy, limit=3)
    assert (empty.status_code, empty.content) == (200, b"")
    assert len(slow.content.splitlines()) == 3
    slow_request = proxy.requests[1]
    assert slow_request.finished - slow_request.started >= 0.05 * (len(slow.content) // 100)
