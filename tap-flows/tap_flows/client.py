"""FlowsAPIStream: the base stream of the flows API, streamed and resumable.

The singer-sdk's own request loop downloads each page whole and retries only the
request, not a body that breaks half-way. This stream keeps the SDK's request
building (URL, auth, headers, User-Agent, session) and replaces the loop with keyset
pages (`tap_flows.paging`) whose bodies are streamed, parsed in large chunks and, whatever
fails (`tap_flows.retry`), asked for again from the last `(time, id)` emitted. Its RECORD
fast path is in `tap_flows.sdk_fast_path`, its BATCH mode in `tap_flows.batch_mode`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import requests
from singer_sdk import RESTStream, metrics
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_flows.batch_mode import BatchModeMixin
from tap_flows.body import body_chunks
from tap_flows.counter import RecordCounter
from tap_flows.ndjson import iter_record_chunks
from tap_flows.paging import Cursor, KeysetPager, PageProgress, new_rows
from tap_flows.retry import check_response
from tap_flows.sdk_fast_path import SDKFastPathMixin
from tap_flows.writer import BlockWriter, record_prefix, record_suffix

if TYPE_CHECKING:
    from collections.abc import Iterable

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Auth, Context, Record

DEFAULT_PAGE_SIZE = 100_000
DEFAULT_REQUEST_TIMEOUT = 60
DEFAULT_MAX_RETRIES = 8
DEFAULT_REQUEST_DEADLINE = 300


class FlowsAPIStream(SDKFastPathMixin, BatchModeMixin, RESTStream[None]):
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
        self.latest_record: Record | None = None
        self.record_prefix = record_prefix(self.name)
        self.record_suffix = record_suffix(datetime.now(UTC))

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
    def request_deadline(self) -> int:
        """Seconds one request may take, body included (`request_deadline_seconds`)."""
        return int(self.config.get("request_deadline_seconds", DEFAULT_REQUEST_DEADLINE))

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

    def validate_response(self, response: requests.Response) -> None:
        """Sort a failed response into retriable (429, 5xx) or fatal (other 4xx).

        See `tap_flows.retry.check_response`: `RetriableAPIError` or `FatalAPIError`
        (401/403 naming the `api_key` setting).

        Args:
            response: The API's response, body not read yet.
        """
        check_response(response, api_key_set=bool(self.config.get("api_key")))

    def parse_response(self, response: requests.Response) -> Iterator[dict]:
        """Parse a streamed NDJSON body, chunk by chunk.

        The RECORD messages of a chunk's rows share its `time_extracted` (the clock is
        read once per ~7,000 rows, not per row).

        Args:
            response: A response opened with `stream=True`.

        Yields:
            Each row, once its whole line has arrived.
        """
        for records in iter_record_chunks(body_chunks(response, self.request_deadline)):
            self.record_suffix = record_suffix(datetime.now(UTC))
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

    def keyset_pager(self, request_counter: metrics.Counter) -> KeysetPager:
        """The pager of one run: this stream's requests, settings and log.

        Args:
            request_counter: The SDK's HTTP request metric.

        Returns:
            A pager that sends its requests through `send_page_request`.
        """
        return KeysetPager(
            self.send_page_request,
            request_counter,
            end_time=self.config.get("end_time"),
            max_retries=self.max_retries,
            log=self.log,
        )

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
            pager = self.keyset_pager(request_counter)
            while (yield from pager.fetch_page(cursor, page_size, self.page_records)) >= page_size:
                self.log("Page done up to (time, id) %s", cursor.last, level=logging.DEBUG)
        if isinstance(self.output, BlockWriter):
            # Every row has been written by now; do not leave the last ones queued in
            # case the SDK's final STATE equals the previous one and is skipped.
            self.output.flush()

    def page_records(
        self, response: requests.Response, params: dict[str, int], progress: PageProgress
    ) -> Iterator[dict]:
        """RECORD mode: the response's rows after the last one emitted (a `Consume`).

        Args:
            response: The page's response, body still on the wire.
            params: The request's parameters, for error messages.
            progress: The page so far; updated (also when the body breaks).

        Returns:
            The new rows, parsed as they arrive (see `tap_flows.paging.new_rows`).
        """
        return new_rows(self.parse_response(response), params, progress)
