"""Which failed requests to the flows API are retried, and how long to wait before each retry.

A 429 or 5xx answer, a connection error, a timeout or a body cut mid-way may succeed
later and is retried; 401/403 and other 4xx cannot and fail at once, with the API's
message. Exponential backoff with jitter spreads the retries of many taps hitting one
recovering server; a server that says how long to wait (`Retry-After`, on 429 and
503) is obeyed, never undercut.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_flows.ndjson import TruncatedBodyError, excerpt

BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 60.0
RETRY_AFTER_MAX_SECONDS = 600.0
"""A Retry-After longer than this is treated as this: a misconfigured server must not park a
scheduled run for hours."""

RETRIABLE_ERRORS = (
    RetriableAPIError,
    TruncatedBodyError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
"""Failures after which the request is sent again, from the last row taken."""

_AUTH_STATUSES = (401, 403)


def check_response(response: requests.Response, *, api_key_set: bool) -> None:
    """Sort a failed response into retriable (429, 5xx) or fatal (other 4xx).

    Args:
        response: The API's response, body not read yet.
        api_key_set: Whether the `api_key` setting is set (401/403 messages say so).

    Raises:
        FatalAPIError: The request cannot succeed as it is; 401/403 name `api_key`.
        RetriableAPIError: The server may answer later (429 and 5xx).
    """
    status = response.status_code
    if status == 200:
        return
    reason = f"HTTP {status} {response.reason}: {server_error(response)}"
    if status in _AUTH_STATUSES:
        hint = "check" if api_key_set else "set"
        msg = f"the flows API refused the request ({reason}); {hint} the api_key setting"
        raise FatalAPIError(msg)
    if status == 429 or status >= 500:
        raise RetriableAPIError(reason, response)
    msg = f"the flows API rejected {response.request.path_url} ({reason})"
    raise FatalAPIError(msg)


def server_error(response: requests.Response) -> str:
    """The API's JSON `error` message, or the start of the body."""
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return excerpt(response.content)


def wait_before_retry(
    exc: Exception,
    failures: int,
    params: dict[str, int],
    *,
    max_retries: int,
    log: Callable[..., None],
) -> None:
    """Sleep before the next attempt, or give up after `max_retries` retries.

    Args:
        exc: What went wrong.
        failures: Consecutive failed attempts without a new row, this one included.
        params: The failed request's parameters, for the messages.
        max_retries: The `max_retries` setting.
        log: The stream's `log` method.

    Raises:
        FatalAPIError: The retries are exhausted.
    """
    if failures > max_retries:
        msg = (
            f"the flows API failed {failures} times in a row without sending a new row "
            f"(max_retries={max_retries}); last error: {exc} (request {params})"
        )
        raise FatalAPIError(msg) from exc
    response = exc.response if isinstance(exc, RetriableAPIError) else None
    retry_after = (
        parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
    )
    wait = backoff_seconds(failures, retry_after)
    log(
        "Request %s failed (%s); retry %d of %d in %.1f s",
        params,
        exc,
        failures,
        max_retries,
        wait,
        level=logging.WARNING,
    )
    time.sleep(wait)


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
