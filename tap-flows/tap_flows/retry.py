"""How long to wait before retrying a failed request to the flows API.

Exponential backoff with jitter spreads the retries of many taps hitting one
recovering server; a server that says how long to wait (`Retry-After`, on 429 and
503) is obeyed, never undercut.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 60.0
RETRY_AFTER_MAX_SECONDS = 600.0
"""A Retry-After longer than this is treated as this: a misconfigured server must not park a
scheduled run for hours."""


def backoff_seconds(failures: int, retry_after: float | None = None) -> float:
    """Seconds to wait after `failures` consecutive failed attempts (1 for the first).

    The wait doubles with each failure, from BACKOFF_FIRST_SECONDS up to
    BACKOFF_MAX_SECONDS, and is drawn from its upper half ("equal jitter"): random enough
    to de-synchronise clients, never close to zero.

    Args:
        failures: Consecutive failed attempts so far, >= 1.
        retry_after: The server's Retry-After in seconds, if it sent one.

    Returns:
        The wait in seconds; at least `retry_after` (capped at RETRY_AFTER_MAX_SECONDS).
    """
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (failures - 1))
    wait = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
    if retry_after is not None:
        wait = max(wait, min(retry_after, RETRY_AFTER_MAX_SECONDS))
    return wait


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Read a Retry-After header: delay-seconds or an HTTP date (RFC 9110, 10.2.3).

    Args:
        value: The header value, or None when absent.
        now: The current time, for HTTP dates (tests pass a fixed one).

    Returns:
        Seconds to wait (>= 0), or None when absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
