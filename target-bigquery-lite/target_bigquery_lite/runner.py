"""The run: read messages, stage records, flush batches to the committer, pass state on.

parse -> validate -> stage -> load -> merge -> state. This is the only module that wires every
step together, and the only owner of what changes during a run: each stream's open staging
file and counts (`StreamRun`), the sequence numbers, the batch being built. The main thread
parses and stages; one committer thread commits the previous batch meanwhile and reports
each committed batch on a queue, which this thread drains between input chunks (woken by
the committer's pipe). STATE messages go out through the `StateTracker`, which writes each
one only after the records received before it are committed.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from target_bigquery_lite import batch_files, messages
from target_bigquery_lite.batch_rows import RowContext, staged_chunks
from target_bigquery_lite.batch_size import BatchSizer
from target_bigquery_lite.columns import VERSION_COLUMN
from target_bigquery_lite.committer import Batch, StreamBatch
from target_bigquery_lite.config import Settings
from target_bigquery_lite.errors import InputError, RecordError, StagingError
from target_bigquery_lite.identifiers import shown
from target_bigquery_lite.layout import table_layout
from target_bigquery_lite.load_methods import TablePlan, TableRequest, method_for
from target_bigquery_lite.partitions import Bounds
from target_bigquery_lite.progress import Progress, StreamCounts
from target_bigquery_lite.reader import LineReader
from target_bigquery_lite.stage import StageWriter, StagingArea
from target_bigquery_lite.state import StateTracker
from target_bigquery_lite.state_text import bookmarked_streams, state_value
from target_bigquery_lite.streams import StreamSpec, build_spec
from target_bigquery_lite.warehouse import Warehouse

log = logging.getLogger("target_bigquery_lite")


@dataclass
class StreamRun:
    """One stream during the run: its spec and plan, and what the runner changes as it goes."""

    spec: StreamSpec
    plan: TablePlan
    counts: StreamCounts
    writer: StageWriter | None = None
    active_version: int | None = None
    bounds: Bounds | None = None  # the partition values of the open batch, when tracked


class Runner:
    """One run of the target over one input."""

    def __init__(self, settings: Settings, out: BinaryIO) -> None:
        """Prepare a run; nothing touches BigQuery until the first SCHEMA."""
        self.settings = settings
        self.run_id = f"{datetime.now(UTC):%Y%m%d%H%M%S}_{uuid.uuid4().hex[:8]}"
        self.seq_base = time.time_ns() // 1000  # a sequence that grows across runs starts here
        self.state = StateTracker(out)
        self.progress = Progress()
        self.area = StagingArea(Path(settings.staging_dir), self.run_id)
        self.streams: dict[str, StreamRun] = {}
        self.seq = 0
        self.batch_no = 1
        self.sizer = BatchSizer(settings)
        self.flush_at = self.sizer.max_rows
        self.batch_started: float | None = None
        self.activations: dict[str, int] = {}
        self.unmarked: set[str] = set()  # streams with unversioned rows staged before versions
        self.consumed = batch_files.ConsumedFiles()
        self.unknown_types: set[str] = set()
        self.received_at = datetime.now(UTC).isoformat()
        self.warehouse = Warehouse(settings, self.run_id)

    def run(self, fd: int) -> None:
        """Process the input on `fd` to its end; raise a `TargetError` on failure."""
        reader = LineReader(fd)
        succeeded = False
        try:
            try:
                while (lines := reader.read_lines(self._timeout(), self._wake_fd())) is not None:
                    self._process(lines, reader.lines_read - len(lines), reader.ended_mid_line)
                    self._tick()
            except RecursionError:  # a schema or record nested too deeply to check or map
                raise InputError(
                    f"a message up to input line {reader.lines_read} nests objects or arrays "
                    "too deeply to process"
                ) from None
            self._finish()
            succeeded = True
        except BaseException as exc:
            self.state.stop()
            for stream in self.streams.values():
                if stream.writer is not None:
                    stream.writer.abandon()
            self.area.after_failure(exc)
            raise
        finally:
            self.progress.summary(succeeded, self.warehouse.costs)

    def kept_files(self) -> list[Path]:
        """Staging files left on disk (after a failure)."""
        return self.area.leftovers()

    # --- messages -------------------------------------------------------------------------

    def _process(self, lines: list[bytes], base: int, at_end: bool) -> None:  # noqa: PLR0912 - the hot path, inlined
        """Handle a chunk of lines; RECORD inline (the hot path), the rest by `_dispatch`."""
        streams, loads = self.streams, orjson.loads
        if self.settings.add_metadata_columns:  # _sdc_received_at: one clock read per chunk
            self.received_at = datetime.now(UTC).isoformat()
        received_at = self.received_at
        for line_no, line in enumerate(lines, base + 1):
            try:
                message = loads(line)
            except orjson.JSONDecodeError:
                if not line.strip():
                    continue
                message = self._parse_slowly(line, line_no, at_end)
            if type(message) is not dict or message.get("type") != "RECORD":
                self._dispatch(message, line_no, line)
                continue
            try:
                stream = streams.get(message.get("stream"))  # type: ignore[arg-type]
            except TypeError:  # a list or an object: not a stream name
                stream = None
            if stream is not None and stream.spec.exact:
                message = messages.parse_line(line, line_no, exact=True)
            record = message.get("record")
            if stream is None or type(record) is not dict:
                raise self._bad_record(message, line_no)
            if "version" in message and not stream.spec.versioned:
                self._make_versioned(stream)
            self.seq += 1
            counts = stream.counts
            try:
                staged = stream.spec.encode(
                    record, message, self.seq, counts.received + 1, received_at,
                    stream.active_version,
                )  # fmt: skip
            except RecordError as exc:
                raise RecordError(f"{exc} (input line {line_no})") from None
            writer = stream.writer or self._open_writer(stream, self.seq)
            try:
                writer.write(staged)
            except OSError as exc:
                raise StagingError.writing(writer.path, exc) from None
            writer.rows += 1
            counts.received += 1
            if stream.bounds is not None:
                stream.bounds.see(record)
            if self.seq >= self.flush_at:
                self._flush("batch_max_rows")

    @staticmethod
    def _parse_slowly(line: bytes, line_no: int, at_end: bool) -> Any:
        """A line orjson refused: maybe NaN/Infinity from a Python tap, maybe a truncated tail."""
        try:
            return messages.parse_line(line, line_no)
        except InputError:
            if at_end:
                raise InputError(
                    f"input ended in the middle of a message (line {line_no}: {line[:60]!r}...)"
                ) from None
            raise

    def _dispatch(self, message: Any, line_no: int, line: bytes) -> None:
        if not isinstance(message, dict):
            raise InputError(f"input line {line_no} is not a JSON object")
        kind = message.get("type")
        if kind == "SCHEMA":  # parsed again: integer bounds beyond 64 bits stay exact
            exact = messages.parse_line(line, line_no, exact_integers=True)
            self._on_schema(messages.parse_schema(exact, line_no))
        elif kind == "STATE":  # passed on as the tap sent it, byte for byte
            value = state_value(line, line_no)
            self._refuse_overwrite_with_bookmarks(value, strict=False)
            self.state.received(value, self.seq)
        elif kind == "ACTIVATE_VERSION":
            self._on_activate(messages.parse_activate_version(message, line_no))
        elif kind == "BATCH":
            self._on_batch(messages.parse_batch(message, line_no), message)
        elif str(kind) not in self.unknown_types:
            self.unknown_types.add(str(kind))
            log.warning("skipping messages of unknown type %r (first on line %d)", kind, line_no)

    def _bad_record(self, message: dict[str, Any], line_no: int) -> InputError:
        name = messages.stream_of(message, line_no)
        if name not in self.streams:
            return InputError(
                f"RECORD for stream '{shown(name)}' on line {line_no} before its SCHEMA"
            )
        return InputError(
            f"RECORD for stream '{shown(name)}' on line {line_no} has no 'record' object"
        )

    def _on_schema(self, message: messages.SchemaMessage) -> None:
        old = self.streams.get(message.stream)
        if old is not None and old.spec.message == message:
            return  # taps repeat SCHEMA messages; nothing changed
        settings = self.settings
        spec = build_spec(
            message,
            settings,
            lambda keys: method_for(settings.load_method, message.stream, keys),
            self.run_id,
            self.seq_base,
        )
        for other in self.streams.values():
            if other.spec.table == spec.table and other.spec.name != message.stream:
                raise InputError(
                    f"streams '{shown(other.spec.name)}' and '{shown(message.stream)}' would both "
                    f"load table {spec.table}"
                )
        counts = self.progress.track(message.stream, spec.table, spec.method.name)
        active_version = None
        if old is not None:
            self._drain("schema change")  # records staged so far load with the old plan
            if old.spec.versioned:
                spec = spec.with_versions()
            active_version = old.active_version
        plan = self._prepare(spec)
        if not spec.versioned and any(f.name == VERSION_COLUMN for f in plan.table_fields):
            spec = spec.with_versions()  # a full-table stream: mark its rows from the start
            plan = self._prepare(spec)
        self.streams[message.stream] = StreamRun(
            spec.spelled_as(plan.table_fields), plan, counts, active_version=active_version
        )

    def _on_activate(self, message: messages.ActivateVersionMessage) -> None:
        stream = self.streams.get(message.stream)
        if stream is None:
            raise InputError(
                f"ACTIVATE_VERSION for stream '{shown(message.stream)}' before its SCHEMA"
            )
        if not stream.spec.versioned:
            self._make_versioned(stream)
        stream.active_version = message.version
        self.activations[message.stream] = message.version
        self.state.hold(self.seq)  # the sync is complete only once older versions are gone

    def _make_versioned(self, stream: StreamRun) -> None:
        """Records carry versions from now on: add the version column first."""
        if stream.counts.received:
            self.unmarked.add(stream.spec.name)
        self._drain("records carry versions")
        spec = stream.spec.with_versions()
        stream.plan = self._prepare(spec)
        stream.spec = spec.spelled_as(stream.plan.table_fields)

    def _on_batch(self, message: messages.BatchMessage, raw: dict[str, Any]) -> None:
        stream = self.streams.get(message.stream)
        if stream is None:
            raise InputError(f"BATCH for stream '{shown(message.stream)}' before its SCHEMA")
        if raw.get("version") is not None and not stream.spec.versioned:
            self._make_versioned(stream)
        context = RowContext(raw, self.received_at, stream.active_version)
        for url in message.manifest:
            path = batch_files.manifest_path(url, message.stream, self.settings.batch_roots)
            chunks = staged_chunks(stream.spec, path, context, self.seq, stream.counts.received + 1)
            for chunk in chunks:
                self._stage_chunk(stream, chunk.data, chunk.rows)
            if self.settings.delete_batch_files:
                self.consumed.add(path, self.seq)

    def _stage_chunk(self, stream: StreamRun, data: bytes, rows: int) -> None:
        """Write staged lines of a BATCH file, flushing exactly at `batch_max_rows`."""
        while rows:
            room = self.flush_at - self.seq
            take = rows if rows <= room else max(room, 1)
            head = data if take == rows else data[: _end_of_line(data, take)]
            writer = stream.writer or self._open_writer(stream, self.seq + 1)
            try:
                writer.write(head)
            except OSError as exc:
                raise StagingError.writing(writer.path, exc) from None
            writer.rows += take
            stream.counts.received += take
            if stream.bounds is not None:  # staged unread: the MERGE asks the staging table
                stream.bounds.unknown()
            self.seq += take
            data, rows = data[len(head) :], rows - take
            if self.seq >= self.flush_at:
                self._flush("batch_max_rows")
            elif self._staged_bytes() >= self.sizer.max_bytes:
                self._flush("batch_max_bytes")

    # --- flushing -------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        """How long the reader may wait for input before the batch timer is due."""
        if self.batch_started is None:
            return None
        deadline = self.batch_started + self.settings.batch_max_seconds
        return max(0.0, deadline - time.monotonic())

    def _wake_fd(self) -> int | None:
        committer = self.warehouse.committer
        return committer.wake_fd if committer is not None else None

    def _tick(self) -> None:
        """Once per input chunk: committed batches, failures, flush timers and sizes, progress."""
        now = time.monotonic()
        self._collect()
        if any(stream.writer is not None for stream in self.streams.values()):
            if self.batch_started is None:
                self.batch_started = now
            if now - self.batch_started >= self.settings.batch_max_seconds:
                self._flush("batch_max_seconds")
            elif self._staged_bytes() >= self.sizer.max_bytes:
                self._flush("batch_max_bytes")
        self.progress.maybe_report(now)

    def _staged_bytes(self) -> int:
        return sum(s.writer.size() for s in self.streams.values() if s.writer is not None)

    def _flush(self, reason: str) -> None:
        """Close every stream's staging file into one batch and hand it to the committer.

        1. close the staging files of the streams with records pending;
        2. wait until the batch in flight is committed (one at a time) and take its news;
        3. check the table quota (and grow the batch limits if a table nears it);
        4. hand the batch over; the state tracker knows which records it covers.
        """
        flushed = [stream for stream in self.streams.values() if stream.writer is not None]
        operations = {stream.spec.name: stream.counts.batches for stream in flushed}
        items = []
        for stream in flushed:
            assert stream.writer is not None
            staged = stream.writer.close()
            if stream.bounds is not None:
                staged = replace(staged, bounds=stream.bounds)
            items.append(StreamBatch(stream.plan, staged))
            stream.writer, stream.bounds = None, None
            stream.counts.batches += 1
        self.batch_started = None
        if items:
            batch = Batch(self.batch_no, self.seq, tuple(items))
            self.batch_no += 1
            rows = sum(item.staged.rows for item in items)
            log.info("flush %d (%s): %d rows", batch.number, reason, rows)
            self.warehouse.wait()
            self._collect()
            self.sizer.before_commit(operations)
            self.state.submitted(batch.end_seq)
            self.warehouse.submit(batch)
        self.flush_at = self.seq + self.sizer.max_rows

    def _drain(self, reason: str) -> None:
        """Flush, then wait until everything is committed."""
        self._flush(reason)
        self.warehouse.wait()
        self._collect()

    def _collect(self) -> None:
        """Take the committer's news: free the disk, count, pass states on (or raise)."""
        self.warehouse.check()
        for batch in self.warehouse.committed():
            for item in batch.streams:
                self.area.remove(item.staged)
                if not item.plan.method.commits_at_end:
                    self.progress.streams[item.plan.stream].committed += item.staged.rows
            self.state.committed(batch.end_seq)
            self.consumed.release(self.state.watermark)

    def _finish(self) -> None:
        """Clean end of input: commit everything, the methods' end-of-run work, final state."""
        self._drain("end of input")
        if self.state.latest is not None:
            self._refuse_overwrite_with_bookmarks(self.state.latest, strict=True)
        for stream in self.streams.values():
            self.warehouse.finish(stream.plan)
            if stream.plan.method.commits_at_end:
                stream.counts.committed = stream.counts.received
        for name, version in self.activations.items():
            self.warehouse.delete_old_versions(
                self.streams[name].plan, version, self.run_id, keep_unmarked=name in self.unmarked
            )
        self.state.finish(self.seq)
        self.consumed.release(self.seq)
        self.area.clean_up()

    def _refuse_overwrite_with_bookmarks(self, value: bytes, *, strict: bool) -> None:
        """An incremental sync must not replace a table: fail before anything is replaced.

        Raises:
            InputError: when the state holds a bookmark for a stream loaded with `overwrite`.
        """
        replaced = {n for n, s in self.streams.items() if s.plan.method.commits_at_end}
        if not replaced:
            return
        for name in bookmarked_streams(value, replaced, strict=strict):
            raise InputError(
                f"stream '{shown(name)}' is loaded with load_method overwrite, but the tap's STATE "
                "holds a bookmark for it (an incremental sync): overwriting would replace the "
                "table with only the rows sent since that bookmark, and saving the bookmark "
                "would skip the rest for good. Nothing was replaced. Use load_method merge or "
                "append, or run the tap without a state (a full sync every run)"
            )

    def _prepare(self, spec: StreamSpec) -> TablePlan:
        """Tables first (created or evolved), then the stream may stage records."""
        wanted = spec.all_wanted()
        request = TableRequest(
            stream=spec.name,
            table=spec.table,
            wanted=wanted,
            keys=spec.key_columns,
            layout=table_layout(wanted, self.settings, spec.name),
            run_id=self.run_id,
            merge_update=self.settings.merge_update,
            bookmarks=spec.bookmark_columns,
        )
        return self.warehouse.prepare(spec.method, request)

    def _open_writer(self, stream: StreamRun, seq: int) -> StageWriter:
        """A staging file for the batch being built, starting with record `seq`."""
        if stream.plan.method.commits_at_end:  # its rows reach the final table only at the end
            self.state.hold(seq)
        stream.writer = self.area.open(stream.spec.table, self.batch_no)
        if (partition := stream.plan.partition) is not None:
            stream.bounds = Bounds(partition.prop, partition.kind)
        return stream.writer


def _end_of_line(data: bytes, lines: int) -> int:
    """The offset just after the `lines`-th newline of `data`."""
    end = -1
    for _ in range(lines):
        end = data.index(b"\n", end + 1)
    return end + 1
