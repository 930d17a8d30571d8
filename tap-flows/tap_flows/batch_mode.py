"""The stream's BATCH mode: batch files filled from keyset pages, a STATE after each file.

With a `jsonl` `batch_config`, `BatchModeMixin.get_batches` fills each file with the
complete lines of one or more page requests (`tap_flows.batches` copies them from the
body), resumed after failures like RECORD mode's pages, and moves the bookmark to a
file's last row before handing its manifest to singer-sdk. Other formats go through
singer-sdk's own batch writer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Generator, Iterator
from functools import partial
from typing import TYPE_CHECKING

from tap_flows.batches import BatchFile, RawPage, compressed
from tap_flows.body import body_chunks
from tap_flows.paging import Cursor, PageProgress

if TYPE_CHECKING:
    from collections.abc import Mapping

    import requests
    from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
    from singer_sdk.helpers.types import Context


class BatchModeMixin:
    """BATCH files straight from the API's body, for `FlowsAPIStream` (public SDK hooks).

    Mixed in before `RESTStream`, so `super()` reaches the SDK's own methods; relies on
    the stream's `passes_records_through`, `start_time`, `page_size`, `request_deadline`
    and `keyset_pager`.
    """

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
            pager = self.keyset_pager(requests_made)
            while more:
                number += 1
                batch = BatchFile(storage, f"{name}-{number}{suffix}", gzip_it=gzip_it)
                while more and batch.rows < batch_size:
                    limit = min(page_size, batch_size - batch.rows)
                    copy = partial(page_to_file, out=batch, deadline=self.request_deadline)
                    page = pager.fetch_page(cursor, limit, copy)
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


def page_to_file(
    response: requests.Response,
    params: dict[str, int],
    progress: PageProgress,
    *,
    out: BatchFile,
    deadline: int,
) -> Iterator[int]:
    """Copy a response's new rows into a batch file; yield row counts (a `Consume`).

    Args:
        response: The page's response, body still on the wire.
        params: The request's parameters (errors name them in `fetch_page`).
        progress: The page so far; updated (also when the body breaks).
        out: The batch file being filled.
        deadline: The `request_deadline_seconds` setting.

    Yields:
        The rows written from each chunk.
    """
    raw = RawPage(progress.last, progress.received)
    try:
        yield from raw.copy(body_chunks(response, deadline), out)
    finally:
        progress.received, progress.last = raw.received, raw.last
        progress.repeats += raw.repeats


def drain(page: Generator[int, None, int], count: Callable[[int], None]) -> int:
    """Run a BATCH-mode page to its end, counting the rows it yields; its return value."""
    while True:
        try:
            count(next(page))
        except StopIteration as done:
            return done.value
