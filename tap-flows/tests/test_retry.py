"""Backoff delays and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tap_flows.retry import (
    BACKOFF_FIRST_SECONDS,
    BACKOFF_MAX_SECONDS,
    RETRY_AFTER_MAX_SECONDS,
    backoff_seconds,
    parse_retry_after,
)


@pytest.mark.parametrize("failures", range(1, 12))
def test_backoff_doubles_within_its_jitter_band_up_to_the_cap(failures: int) -> None:
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (failures - 1))
    waits = {backoff_seconds(failures) for _ in range(200)}
    assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
    assert len(waits) > 1  # jittered


def test_retry_after_is_a_floor_and_is_capped() -> None:
    assert backoff_seconds(1, retry_after=7) == 7
    assert backoff_seconds(10, retry_after=1) >= BACKOFF_MAX_SECONDS / 2
    assert backoff_seconds(1, retry_after=10**6) == RETRY_AFTER_MAX_SECONDS


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(None) is None
    assert parse_retry_after(" 3 ") == 3.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
