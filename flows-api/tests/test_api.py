"""The HTTP API against a real `flows-api serve` process (gunicorn) on a free port."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from flows_api.db import COLUMNS

from .conftest import BLOCK_SIZE, BLOCK_TIME

URL = "/api/v1/stream/flows.json"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, flows_db: Path):
    from dev_services.flows_api import start_flows_api

    service = start_flows_api(flows_db, tmp_path_factory.mktemp("api") / "api.log")
    yield service.url
    service.stop()


def get_rows(base: str, **params: int | str) -> list[dict]:
    response = requests.get(base + URL, params=params, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def as_tuple(record: dict) -> tuple:
    return tuple(record[c] for c in COLUMNS)


def test_rows_have_all_ten_fields_with_types(api: str, source_rows: list) -> None:
    rows = get_rows(api, limit=5)
    assert list(rows[0]) == list(COLUMNS)
    assert [as_tuple(r) for r in rows] == source_rows[:5]


@pytest.mark.parametrize("page_size", [997, 1_000, 4_999, 5_000])
def test_keyset_pages_return_every_row_once_across_a_shared_time_block(
    api: str, source_rows: list, page_size: int
) -> None:
    seen: list[tuple] = []
    params: dict[str, int] = {"limit": page_size}
    while page := get_rows(api, **params):
        seen += [as_tuple(r) for r in page]
        params = {"since": page[-1]["time"], "after_id": page[-1]["id"], "limit": page_size}
    assert seen == sorted(source_rows, key=lambda r: (r[1], r[0]))
    assert len({r[0] for r in seen}) == len(source_rows)
    block_pages = {i // page_size for i, r in enumerate(seen) if r[1] == BLOCK_TIME}
    assert len(block_pages) > 1, "the shared-time block must straddle a page boundary"


def test_since_is_inclusive_and_until_exclusive(api: str, source_rows: list) -> None:
    rows = get_rows(api, since=BLOCK_TIME, until=BLOCK_TIME + 1, limit=1_000_000)
    assert len(rows) == BLOCK_SIZE
    assert {r["time"] for r in rows} == {BLOCK_TIME}
    expected = [r for r in source_rows if 100 <= r[1] < 200]
    assert [as_tuple(r) for r in get_rows(api, since=100, until=200, limit=1_000_000)] == expected


def test_after_id_resumes_strictly_after_the_given_row(api: str) -> None:
    rows = get_rows(api, since=BLOCK_TIME, after_id=3_001 + 2_500, limit=3)
    assert [(r["time"], r["id"]) for r in rows] == [
        (BLOCK_TIME, 3_001 + 2_501 + i) for i in range(3)
    ]


def test_empty_result_is_an_empty_body(api: str) -> None:
    response = requests.get(api + URL, params={"since": 10**12}, timeout=10)
    assert response.status_code == 200
    assert response.content == b""


def test_default_limit_applies(api: str) -> None:
    assert len(get_rows(api)) == 10_000


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=abc", "'since' must be a non-negative integer"),
        ("since=1.5", "'since' must be a non-negative integer"),
        ("since=-1", "'since' must be a non-negative integer"),
        ("limit=0", "'limit' must be >= 1"),
        ("limit=-5", "'limit' must be a non-negative integer"),
        ("limit=1000001", "'limit' must be <= 1000000"),
        ("after_id=5", "'after_id' needs 'since'"),
        ("sinse=5", "unknown parameter(s) sinse"),
        ("since=1&since=2", "given more than once: since"),
        ("until=1_000", "'until' must be a non-negative integer"),
    ],
)
def test_bad_parameters_get_400_with_a_json_error(api: str, query: str, message: str) -> None:
    response = requests.get(f"{api}{URL}?{query}", timeout=10)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_healthz_and_unknown_paths(api: str) -> None:
    assert requests.get(api + "/healthz", timeout=10).json() == {"status": "ok"}
    missing = requests.get(api + "/api/v1/nope", timeout=10)
    assert missing.status_code == 404
    assert "no such endpoint" in missing.json()["error"]


def test_api_key_is_required_when_configured(start_flows_api_service, flows_db: Path) -> None:
    service = start_flows_api_service(flows_db, api_key="s3cret-key")
    url = service.url + URL + "?limit=2"
    assert requests.get(url, timeout=10).status_code == 401
    wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    assert "API key" in wrong.json()["error"]
    right = requests.get(url, headers={"Authorization": "Bearer s3cret-key"}, timeout=10)
    assert right.status_code == 200
    assert len(right.text.splitlines()) == 2
    assert requests.get(service.url + "/healthz", timeout=10).status_code == 200
    assert "s3cret-key" not in Path(service.log_path).read_text()
