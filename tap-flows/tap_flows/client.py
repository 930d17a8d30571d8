"""FlowsAPIStream: reads the flows API's NDJSON endpoint page by page, resuming after failures.

The singer-sdk's own request loop downloads each page whole and retries only the
request, not a body that breaks half-way. This stream keeps the SDK's request
building (URL, auth, headers, User-Agent, session) and replaces the loop with one that
streams the body, parses it in large chunks and, whatever fails, asks again from the
last `(time, id)` it emitted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import requests
from singer_sdk import RESTStream, metrics
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_flows.counter import RecordCounter
from tap_flows.ndjson import BadLineError, TruncatedBodyError, excerpt, iter_record_chunks
from tap_flows.retry import backoff_seconds, parse_retry_after
from tap_flows.writer import BlockWriter

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Auth, Context

DEFAULT_PAGE_SIZE = 100_000
DEFAULT_REQUEST_TIMEOUT = 60
DEFAULT_MAX_RETRIES = 8
CHUNK_BYTES = 1 << 20
"""Bytes read from the socket per parse step: ~7,000 rows, one `orjson` call per line."""

_RETRIABLE = (
    RetriableAPIError,
    TruncatedBodyError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
_AUTH_STATUSES = (401, 403)


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


class FlowsAPIStream(RESTStream[None]):
    """A stream of the flows API: keyset pages on `(time, id)`, streamed and resumable."""

    # The schema is ours and the API's JSON types already match it: conforming would
    # only copy every record.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: Tap, *args: Any, **kwargs: Any) -> None:
        super().__init__(tap, *args, **kwargs)
        self.output = tap.message_writer
        # One STATE per page: the SDK counts emitted records, and pages are full except
        # the last one, so its counter falls on page ends.
        self.STATE_MSG_FREQUENCY = self.page_size

    @property
    def url_base(self) -> str:
        """The API's base URL from the `api_url` setting."""
        return str(self.config["api_url"]).rstrip("/")

    @property
    def page_size(self) -> int:
        """Rows per request (`page_size`); also the number of records between STATEs."""
        return int(self.config.get("page_size", DEFAULT_PAGE_SIZE))

    @property
    def timeout(self) -> int:
        """Seconds to wait for a connection or for the next bytes (`request_timeout`)."""
        return int(self.config.get("request_timeout", DEFAULT_REQUEST_TIMEOUT))

    @property
    def max_retries(self) -> int:
        """Retries after consecutive failures without a new row (`max_retries`)."""
        return int(self.config.get("max_retries", DEFAULT_MAX_RETRIES))

    @property
    def http_headers(self) -> dict:
        """Ask for NDJSON explicitly."""
        return {"Accept": "application/x-ndjson"}

    @cached_property
    def authenticator(self) -> Auth:
        """`Authorization: Bearer <api_key>` when a key is set."""
        api_key = self.config.get("api_key")
        return BearerTokenAuthenticator(token=api_key) if api_key else super().authenticator

    def get_record_counter(
        self, *, endpoint: str | None = None, log_interval: float = metrics.DEFAULT_LOG_INTERVAL
    ) -> metrics.Counter:
        """The SDK's `record_count` metric, counted at the cost of an addition per record.

        Args:
            endpoint: The endpoint name to include in metrics.
            log_interval: Seconds between two logs of the count.

        Returns:
            A counter for the records of this stream.
        """
        tags = {metrics.Tag.STREAM: self.name}
        if endpoint:
            tags[metrics.Tag.ENDPOINT] = endpoint
        return RecordCounter(metrics.Metric.RECORD_COUNT, tags, log_interval=log_interval)

    def generate_child_contexts(
        self, record: dict, context: Context | None
    ) -> Iterable[Context | None]:
        """No child context without child streams.

        The SDK's default hands each record to the (absent) children as a context, and
        copies it to do so: one dict copy per record for nothing.

        Args:
            record: A record of this stream.
            context: Stream partition or context dictionary.

        Returns:
            The SDK's child contexts if this stream has children, else none.
        """
        return super().generate_child_contexts(record, context) if self.child_streams else ()

    def start_time(self, context: Context | None) -> int | None:
        """The first `time` to read: from the bookmark minus the lookback, else `start_time`.

        The bookmark is inclusive: rows sharing its `time` are read again, and the
        target's MERGE on `id` absorbs them. `start_time` stays a floor, so a partition
        of a backfill never reads before its own range.

        Args:
            context: Stream partition or context dictionary.

        Returns:
            The `since` of the first request, or None to start at the beginning.
        """
        floor = self.config.get("start_time")
        bookmark = self.get_starting_replication_key_value(context)
        if bookmark is None:
            return floor
        since = max(0, int(bookmark) - int(self.config.get("lookback_seconds", 0)))
        return since if floor is None else max(since, floor)

    def page_params(self, cursor: Cursor, limit: int) -> dict[str, int]:
        """Query parameters for the next `limit` rows after `cursor`.

        Args:
            cursor: Where the run stands.
            limit: Rows to ask for.

        Returns:
            The query parameters of the request.
        """
        params: dict[str, int] = {}
        if cursor.last is not None:
            params["since"], params["after_id"] = cursor.last
        elif cursor.since is not None:
            params["since"] = cursor.since
        end_time = self.config.get("end_time")
        if end_time is not None:
            params["until"] = end_time
        params["limit"] = limit
        return params

    def validate_response(self, response: requests.Response) -> None:
        """Sort a failed response into retriable (429, 5xx) or fatal (other 4xx).

        Args:
            response: The API's response, body not read yet.

        Raises:
            FatalAPIError: The request cannot succeed as it is; 401/403 name `api_key`.
            RetriableAPIError: The server may answer later (429 and 5xx).
        """
        status = response.status_code
        if status == 200:
            return
        reason = f"HTTP {status} {response.reason}: {server_error(response)}"
        if status in _AUTH_STATUSES:
            hint = "check" if self.config.get("api_key") else "set"
            msg = f"the flows API refused the request ({reason}); {hint} the api_key setting"
            raise FatalAPIError(msg)
        if status == 429 or status >= 500:
            raise RetriableAPIError(reason, response)
        msg = f"the flows API rejected {response.request.path_url} ({reason})"
        raise FatalAPIError(msg)

    def parse_response(self, response: requests.Response) -> Iterator[dict]:
        """Parse a streamed NDJSON body, chunk by chunk.

        Args:
            response: A response opened with `stream=True`.

        Yields:
            Each row, once its whole line has arrived.
        """
        for records in iter_record_chunks(response.iter_content(CHUNK_BYTES)):
            yield from records

    def send_page_request(self, params: dict[str, int]) -> requests.Response:
        """Send one request with the body left unread, so it can be streamed.

        Args:
            params: The query parameters.

        Returns:
            A 200 response, its body still on the wire.
        """
        prepared = self.build_prepared_request(
            method="GET", url=self.get_url(None), params=params, headers=self.http_headers
        )
        response = self.requests_session.send(
            prepared, stream=True, timeout=self.timeout, allow_redirects=self.allow_redirects
        )
        try:
            self.validate_response(response)
        except Exception:
            response.close()
            raise
        return response

    def request_records(self, context: Context | None) -> Iterator[dict]:
        """Yield every row from the start position up to `end_time`, in `(time, id)` order.

        Each page asks for `page_size` rows strictly after the last `(time, id)` emitted
        (keyset pagination), so rows sharing one `time` across a page boundary are
        neither lost nor repeated. A page shorter than asked for is the last.

        Args:
            context: Stream partition or context dictionary.

        Yields:
            Each row as a dict, exactly once.
        """
        page_size = self.page_size
        cursor = Cursor(since=self.start_time(context))
        with self.get_http_request_counter() as request_counter:
            request_counter.with_context(context)
            while (yield from self.read_page(cursor, page_size, request_counter)) >= page_size:
                self.log("Page done up to (time, id) %s", cursor.last, level=logging.DEBUG)
        if isinstance(self.output, BlockWriter):
            # Every row has been written by now; do not leave the last ones queued in
            # case the SDK's final STATE equals the previous one and is skipped.
            self.output.flush()

    def read_page(
        self, cursor: Cursor, page_size: int, request_counter: metrics.Counter
    ) -> Generator[dict, None, int]:
        """Yield the next page of rows, over as many requests as failures make necessary.

        When a body breaks (connection cut, timeout, 5xx, 429, truncated line), the
        request is sent again for the rest of the page, from the last row emitted,
        after a backoff. Failures count towards `max_retries` only while no new row
        arrives. A row at or before the last one emitted (the API or a proxy repeating
        itself) is dropped with a warning.

        Args:
            cursor: Where the run stands; advanced as rows are emitted.
            page_size: Rows in a full page.
            request_counter: The SDK's HTTP request metric.

        Yields:
            Each new row of the page.

        Returns:
            How many rows the server sent for this page (dropped ones included).

        Raises:
            FatalAPIError: A line that is not a flows row, or retries exhausted.
        """
        received = 0
        failures = 0
        last_time, last_id = cursor.last or BEFORE_ALL
        while received < page_size:
            params = self.page_params(cursor, page_size - received)
            skipped = 0
            error: Exception | None = None
            try:
                with self.send_page_request(params) as response:
                    request_counter.increment()
                    for record in self.parse_response(response):
                        received += 1
                        try:
                            row_time, row_id = record["time"], record["id"]
                            newer = row_time > last_time or (
                                row_time == last_time and row_id > last_id
                            )
                        except (KeyError, TypeError):
                            raise not_a_row(record, params) from None
                        if newer:
                            last_time, last_id = row_time, row_id
                            yield record
                        else:
                            skipped += 1
            except _RETRIABLE as exc:
                error = exc
            except BadLineError as exc:
                msg = f"{exc} (request {params})"
                raise FatalAPIError(msg) from None
            progressed = cursor.move_to((last_time, last_id))
            if skipped:
                self.log(
                    "Dropped %d rows at or before the last one emitted, %s",
                    skipped,
                    cursor.last,
                    level=logging.WARNING,
                )
            if error is None:
                return received
            failures = 1 if progressed else failures + 1
            self.wait_before_retry(error, failures, params)
        return received

    def wait_before_retry(self, exc: Exception, failures: int, params: dict[str, int]) -> None:
        """Sleep before the next attempt, or give up after `max_retries` retries.

        Args:
            exc: What went wrong.
            failures: Consecutive failed attempts without a new row, this one included.
            params: The failed request's parameters, for the messages.

        Raises:
            FatalAPIError: The retries are exhausted.
        """
        if failures > self.max_retries:
            msg = (
                f"the flows API failed {failures} times in a row without sending a new row "
                f"(max_retries={self.max_retries}); last error: {exc} (request {params})"
            )
            raise FatalAPIError(msg) from exc
        response = exc.response if isinstance(exc, RetriableAPIError) else None
        retry_after = (
            parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        )
        wait = backoff_seconds(failures, retry_after)
        self.log(
            "Request %s failed (%s); retry %d of %d in %.1f s",
            params,
            exc,
            failures,
            self.max_retries,
            wait,
            level=logging.WARNING,
        )
        time.sleep(wait)


def server_error(response: requests.Response) -> str:
    """The API's JSON `error` message, or the start of the body."""
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return excerpt(response.content)


def not_a_row(record: object, params: dict[str, int]) -> FatalAPIError:
    """The error for a JSON value that is not a flows row with integer `time` and `id`."""
    text = excerpt(repr(record).encode())
    return FatalAPIError(f"the flows API sent a line that is not a flows row: {text} ({params})")
