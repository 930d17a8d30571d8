"""Keyset paging on `(time, id)`: the next page of rows, resumed after any failure.

Each page asks for `page_size` rows strictly after the last `(time, id)` taken
(`since=<time>&after_id=<id>`), so rows sharing one `time` across a page boundary are
neither lost nor repeated. When a request fails, before its body or half-way through
it, it is sent again for the rest of the page from the last row taken, after a backoff
(`tap_flows.retry`).

The API's `(time, id)` order is the tap's premise: the bookmark is the `time` of the
last row taken, so a row served after a later one could be skipped by every later run.
Since every request asks for rows strictly after the last one taken, no overlap is ever
requested: a row with the same `(time, id)` as the last one taken is that row again
(`id` is the primary key) and is dropped with a warning; a row before it is out of
order and fails the run (`OutOfOrderError`), before any STATE past it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import requests
from singer_sdk.exceptions import FatalAPIError

from tap_flows.ndjson import BadLineError, excerpt
from tap_flows.retry import RETRIABLE_ERRORS, wait_before_retry

if TYPE_CHECKING:
    from singer_sdk import metrics

T = TypeVar("T")

BEFORE_ALL = (-1, -1)
"""A `(time, id)` before any row: the API's times and ids are >= 0."""


@dataclass
class Cursor:
    """Where a run stands: the `since` it started from, the last `(time, id)` emitted."""

    since: int | None
    last: tuple[int, int] | None = None

    def move_to(self, position: tuple[int, int]) -> bool:
        """Note the last row emitted; whether that is progress since the previous call."""
        if position in (BEFORE_ALL, self.last):
            return False
        self.last = position
        return True


class OutOfOrderError(Exception):
    """A row came after a later one: the API broke the `(time, id)` order."""

    def __init__(self, row: tuple[int, int], last: tuple[int, int]) -> None:
        """Name the offending row and the last row taken before it."""
        super().__init__(
            f"the flows API sent rows out of (time, id) order: row (time, id) {row} came "
            f"after {last}; the tap relies on that order, so it stops before any STATE "
            "past the rows it took in order"
        )


def check_order(row: tuple[int, int], last: tuple[int, int]) -> None:
    """Fail unless `row` (not after `last`) is `last` again, a harmless repeat."""
    if row != last:
        raise OutOfOrderError(row, last)


@dataclass
class PageProgress:
    """What the requests for one page have produced so far."""

    last: tuple[int, int]
    received: int = 0
    repeats: int = 0


Consume = Callable[[requests.Response, dict[str, int], PageProgress], Iterator[T]]
"""Reads one response's body, updating a `PageProgress`; yields what the caller wants."""


def page_params(cursor: Cursor, limit: int, end_time: int | None) -> dict[str, int]:
    """Query parameters for the next `limit` rows after `cursor`.

    Args:
        cursor: Where the run stands.
        limit: Rows to ask for.
        end_time: The `end_time` setting (the API's exclusive `until`), if set.

    Returns:
        The query parameters of the request.
    """
    params: dict[str, int] = {}
    if cursor.last is not None:
        params["since"], params["after_id"] = cursor.last
    elif cursor.since is not None:
        params["since"] = cursor.since
    if end_time is not None:
        params["until"] = end_time
    params["limit"] = limit
    return params


class KeysetPager:
    """Fetches the pages of one run, sending each request again after a failure."""

    def __init__(
        self,
        send: Callable[[dict[str, int]], requests.Response],
        request_counter: metrics.Counter,
        *,
        end_time: int | None,
        max_retries: int,
        log: Callable[..., None],
    ) -> None:
        """Page with the stream's own request and log.

        Args:
            send: Sends a request with these query parameters; a 200 response, its
                body still on the wire.
            request_counter: The SDK's HTTP request metric.
            end_time: The `end_time` setting, if set.
            max_retries: The `max_retries` setting.
            log: The stream's `log` method.
        """
        self.send = send
        self.request_counter = request_counter
        self.end_time = end_time
        self.max_retries = max_retries
        self.log = log

    def fetch_page(
        self, cursor: Cursor, page_size: int, consume: Consume[T]
    ) -> Generator[T, None, int]:
        """Request the next page and hand each response to `consume`, resuming after failures.

        When a body breaks (connection cut, timeout, 5xx, 429, truncated line), the
        request is sent again for the rest of the page, from the last row taken, after a
        backoff. Failures count towards `max_retries` only while no new row arrives.

        Args:
            cursor: Where the run stands; advanced as rows are taken.
            page_size: Rows in a full page.
            consume: Reads a response (RECORD mode: yields its rows; BATCH mode: writes
                them to a batch file and yields row counts).

        Yields:
            Whatever `consume` yields.

        Returns:
            How many rows the server sent for this page (dropped repeats included).

        Raises:
            FatalAPIError: A line that is not a flows row, a row out of `(time, id)`
                order, or retries exhausted.
        """
        progress = PageProgress(cursor.last or BEFORE_ALL)
        failures = 0
        while progress.received < page_size:
            params = page_params(cursor, page_size - progress.received, self.end_time)
            progress.repeats = 0
            error: Exception | None = None
            try:
                with self.send(params) as response:
                    self.request_counter.increment()
                    yield from consume(response, params, progress)
            except RETRIABLE_ERRORS as exc:
                error = exc
            except (BadLineError, OutOfOrderError) as exc:
                msg = f"{exc} (request {params})"
                raise FatalAPIError(msg) from None
            progressed = cursor.move_to(progress.last)
            if progress.repeats:
                self.log(
                    "Dropped %d repeats of the last row emitted; page up to %s",
                    progress.repeats,
                    cursor.last,
                    level=logging.WARNING,
                )
            if error is None:
                return progress.received
            failures = 1 if progressed else failures + 1
            wait_before_retry(error, failures, params, max_retries=self.max_retries, log=self.log)
        return progress.received


def new_rows(
    records: Iterable[dict], params: dict[str, int], progress: PageProgress
) -> Iterator[dict]:
    """RECORD mode: yield a response's rows that come after the last one emitted.

    A repeat of the last row emitted is dropped and counted in `progress.repeats`; a
    row before it fails (`check_order`).

    Args:
        records: The response's rows, as they are parsed.
        params: The request's parameters, for error messages.
        progress: The page so far; updated (also when the body breaks).

    Yields:
        Each new row.

    Raises:
        FatalAPIError: A JSON value that is not a flows row.
        OutOfOrderError: A row before the last one emitted.
    """
    received = progress.received
    last_time, last_id = progress.last
    repeats = 0
    try:
        for record in records:
            received += 1
            try:
                row_time, row_id = record["time"], record["id"]
                newer = row_time > last_time or (row_time == last_time and row_id > last_id)
            except (KeyError, TypeError):
                raise not_a_row(record, params) from None
            if newer:
                last_time, last_id = row_time, row_id
                yield record
            else:
                check_order((row_time, row_id), (last_time, last_id))
                repeats += 1
    finally:
        progress.received, progress.last = received, (last_time, last_id)
        progress.repeats += repeats


def not_a_row(record: object, params: dict[str, int]) -> FatalAPIError:
    """The error for a JSON value that is not a flows row with integer `time` and `id`."""
    text = excerpt(repr(record).encode())
    return FatalAPIError(f"the flows API sent a line that is not a flows row: {text} ({params})")
