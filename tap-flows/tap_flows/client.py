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
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from singer_sdk import RESTStream, metrics
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform

from tap_flows.batches import BatchFile, RawPage, compressed
from tap_flows.counter import RecordCounter
from tap_flows.ndjson import BadLineError, TruncatedBodyError, excerpt, iter_record_chunks
from tap_flows.retry import backoff_seconds, parse_retry_after
from tap_flows.writer import BlockWriter, record_prefix, record_suffix

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from singer_sdk import Tap
    from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
    from singer_sdk.helpers.types import Auth, Context, Record

T = TypeVar("T")

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


@dataclass
class PageProgress:
    """What the requests for one page have produced so far."""

    last: tuple[int, int]
    received: int = 0
    skipped: int = 0


Consume = Callable[[requests.Response, dict[str, int], PageProgress], Iterator[T]]
"""Reads one response's body, updating a `PageProgress`; yields what the caller wants."""


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
        self.latest_record: Record | None = None
        self.record_prefix = record_prefix(self.name)
        self.record_suffix = record_suffix(datetime.now(UTC))

    @cached_property
    def passes_records_through(self) -> bool:
        """Whether records leave the tap exactly as the API sent them.

        True unless stream maps (aliases, filters, computed or removed properties,
        flattening) or a catalog's deselected properties change them. Only then may the
        fast paths skip the SDK's per-record selection and mapping: the RECORD writer
        (`_write_record_message`) and the raw BATCH files (`get_batches`).
        Evaluated on first use, during the sync, once the catalog and maps are loaded.
        """
        maps = self.stream_maps
        properties = self.schema.get("properties", {})
        return (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and maps[0].stream_alias == self.name
            and not maps[0].flattening_enabled
            and self.TYPE_CONFORMANCE_LEVEL is TypeConformanceLevel.NONE
            and self.replication_method == "INCREMENTAL"
            and all(self.mask[("properties", name)] for name in properties)
        )

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

        The RECORD messages of a chunk's rows share its `time_extracted` (the clock is
        read once per ~7,000 rows, not per row).

        Args:
            response: A response opened with `stream=True`.

        Yields:
            Each row, once its whole line has arrived.
        """
        for records in iter_record_chunks(response.iter_content(CHUNK_BYTES)):
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

        Args:
            cursor: Where the run stands; advanced as rows are emitted.
            page_size: Rows in a full page.
            request_counter: The SDK's HTTP request metric.

        Returns:
            How many rows the server sent for this page (dropped ones included).
        """
        return (yield from self.fetch_page(cursor, page_size, request_counter, self.page_records))

    def fetch_page(
        self,
        cursor: Cursor,
        page_size: int,
        request_counter: metrics.Counter,
        consume: Consume[T],
    ) -> Generator[T, None, int]:
        """Request the next page and hand each response to `consume`, resuming after failures.

        When a body breaks (connection cut, timeout, 5xx, 429, truncated line), the
        request is sent again for the rest of the page, from the last row taken, after a
        backoff. Failures count towards `max_retries` only while no new row arrives.

        Args:
            cursor: Where the run stands; advanced as rows are taken.
            page_size: Rows in a full page.
            request_counter: The SDK's HTTP request metric.
            consume: Reads a response (RECORD mode: yields its rows; BATCH mode: writes
                them to a batch file and yields row counts).

        Yields:
            Whatever `consume` yields.

        Returns:
            How many rows the server sent for this page (dropped ones included).

        Raises:
            FatalAPIError: A line that is not a flows row, or retries exhausted.
        """
        progress = PageProgress(cursor.last or BEFORE_ALL)
        failures = 0
        while progress.received < page_size:
            params = self.page_params(cursor, page_size - progress.received)
            progress.skipped = 0
            error: Exception | None = None
            try:
                with self.send_page_request(params) as response:
                    request_counter.increment()
                    yield from consume(response, params, progress)
            except _RETRIABLE as exc:
                error = exc
            except BadLineError as exc:
                msg = f"{exc} (request {params})"
                raise FatalAPIError(msg) from None
            progressed = cursor.move_to(progress.last)
            if progress.skipped:
                self.log(
                    "Dropped %d rows at or before the last one emitted, %s",
                    progress.skipped,
                    cursor.last,
                    level=logging.WARNING,
                )
            if error is None:
                return progress.received
            failures = 1 if progressed else failures + 1
            self.wait_before_retry(error, failures, params)
        return progress.received

    def page_records(
        self, response: requests.Response, params: dict[str, int], progress: PageProgress
    ) -> Iterator[dict]:
        """RECORD mode: yield the response's rows that come after the last one emitted.

        A row at or before the last one emitted (the API or a proxy repeating itself)
        is dropped and counted in `progress.skipped`.

        Args:
            response: The page's response, body still on the wire.
            params: The request's parameters, for error messages.
            progress: The page so far; updated (also when the body breaks).

        Yields:
            Each new row.

        Raises:
            FatalAPIError: A JSON value that is not a flows row.
        """
        received = progress.received
        last_time, last_id = progress.last
        skipped = 0
        try:
            for record in self.parse_response(response):
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
                    skipped += 1
        finally:
            progress.received, progress.last = received, (last_time, last_id)
            progress.skipped += skipped

    # --- RECORD fast path: private singer-sdk hooks, pinned by tests/test_sdk_contract.py ---

    def _write_record_message(self, record: Record) -> None:
        """Write a RECORD straight into the block writer when nothing transforms records.

        singer-sdk builds a `RecordMessage` per record, pops deselected properties,
        runs the stream map, reads the clock and converts the message to a dict before
        encoding it: about 40% of the tap's time. When `passes_records_through`, the
        line is the same bytes built from a prefix, the record encoded in place, and a
        suffix holding the chunk's `time_extracted`.

        Args:
            record: The record, as the API sent it.
        """
        if self.writes_records_directly:
            self.output.write_record(self.record_prefix, record, self.record_suffix)
        else:
            super()._write_record_message(record)

    @cached_property
    def writes_records_directly(self) -> bool:
        """Whether `_write_record_message` may bypass the SDK (decided once per run)."""
        return self.passes_records_through and isinstance(self.output, BlockWriter)

    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        """Remember the latest record; the bookmark moves only when a STATE is written.

        The stream is sorted and its bookmark is the last record's `time`, so applying
        only the latest record before each STATE gives the same state as applying every
        record (the SDK's state manager costs ~10% of the tap's time per record). A STATE
        written at any moment, including on SIGTERM, is at or behind the records emitted.

        Args:
            latest_record: The record just emitted.
            context: Stream partition or context dictionary.
        """
        if context is None:
            self.latest_record = latest_record
        else:
            super()._increment_stream_state(latest_record, context=context)

    def _write_state_message(self) -> None:
        """Move the bookmark to the latest record, then let the SDK write the STATE."""
        self.apply_latest_record()
        super()._write_state_message()

    def _finalize_state(self, state: dict | None = None) -> None:
        """Move the bookmark to the latest record before the SDK finalizes the state.

        Args:
            state: State object to promote progress markers with.
        """
        self.apply_latest_record()
        super()._finalize_state(state)

    def apply_latest_record(self) -> None:
        """Apply the deferred bookmark update of `_increment_stream_state`, if any."""
        record, self.latest_record = self.latest_record, None
        if record is not None:
            super()._increment_stream_state(record, context=None)
            self.state_manager.is_flushed = False

    # --- BATCH fast path: public singer-sdk hooks ---

    def get_batch_config(self, config: Mapping) -> BatchConfig | None:
        """The `batch_config` setting, unless records must be transformed one by one.

        singer-sdk's own BATCH writer ignores stream maps and deselected properties (it
        batches the raw records). Rather than send rows the user asked to change, the
        tap then sends RECORD messages, which honour both, and says so.

        Args:
            config: The tap's settings.

        Returns:
            The batch configuration, or None for RECORD messages.
        """
        batch_config = super().get_batch_config(config)
        if batch_config is not None and not self.passes_records_through:
            self.log(
                "batch_config is set but stream maps or deselected properties transform "
                "the records: sending RECORD messages instead of BATCH",
                level=logging.WARNING,
            )
            return None
        return batch_config

    def get_batches(
        self, batch_config: BatchConfig, context: Context | None = None
    ) -> Iterator[tuple[BaseBatchFileEncoding, list[str]]]:
        """Write BATCH files straight from the API's body, `batch_size` rows each.

        Each file is filled by one or more page requests (the usual keyset pages,
        resumed after failures) whose complete lines are copied as they arrive; see
        `tap_flows.batches`. Before a file's manifest is yielded, the bookmark moves to
        its last row: singer-sdk then writes the BATCH message and right after it the
        STATE, so a STATE never covers a row whose BATCH has not been sent.

        Args:
            batch_config: The `batch_config` setting.
            context: Stream partition or context dictionary.

        Yields:
            The encoding and the one-file manifest of each batch.
        """
        if batch_config.encoding.format != "jsonl":
            yield from super().get_batches(batch_config, context)
            return
        self._write_starting_replication_value(context)
        gzip_it = compressed(batch_config.encoding.compression)
        storage = batch_config.storage
        name = f"{storage.prefix or ''}{self.tap_name}--{self.name}-{uuid.uuid4()}"
        suffix = ".json.gz" if gzip_it else ".jsonl"
        cursor = Cursor(since=self.start_time(context))
        page_size, batch_size = self.page_size, max(1, batch_config.batch_size)
        number, more = 0, True
        with self.get_http_request_counter() as requests_made, self.get_record_counter() as rows:
            requests_made.with_context(context)
            rows.with_context(context)
            while more:
                number += 1
                batch = BatchFile(storage, f"{name}-{number}{suffix}", gzip_it=gzip_it)
                while more and batch.rows < batch_size:
                    limit = min(page_size, batch_size - batch.rows)
                    copy = partial(self.page_to_file, out=batch)
                    page = self.fetch_page(cursor, limit, requests_made, copy)
                    more = drain(page, rows.increment) >= limit
                url = batch.close()
                if url is not None and cursor.last is not None:
                    self.state_manager.increment_state(
                        {self.replication_key: cursor.last[0]},
                        context=context,
                        replication_key=str(self.replication_key),
                    )
                    yield batch_config.encoding, [url]
        self.state_manager.finalize_state(self.stream_state)

    @staticmethod
    def page_to_file(
        response: requests.Response,
        params: dict[str, int],
        progress: PageProgress,
        *,
        out: BatchFile,
    ) -> Iterator[int]:
        """BATCH mode: copy the response's new rows into `out`; yield row counts.

        Args:
            response: The page's response, body still on the wire.
            params: The request's parameters (errors name them in `fetch_page`).
            progress: The page so far; updated (also when the body breaks).
            out: The batch file being filled.

        Yields:
            The rows written from each chunk.
        """
        raw = RawPage(progress.last, progress.received)
        try:
            yield from raw.copy(response.iter_content(CHUNK_BYTES), out)
        finally:
            progress.received, progress.last = raw.received, raw.last
            progress.skipped += raw.skipped

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


def drain(page: Generator[int, None, int], count: Callable[[int], None]) -> int:
    """Run a BATCH-mode page to its end, counting the rows it yields; its return value."""
    while True:
        try:
            count(next(page))
        except StopIteration as done:
            return done.value


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
