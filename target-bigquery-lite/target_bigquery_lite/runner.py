"""The run: read messages, stage records, flush batches to the committer, pass state on.

parse -> validate -> stage -> load -> merge -> state. This is the only module that wires every
step together. The main thread parses and stages; one committer thread loads and merges the
previous batch meanwhile. A flush drains every stream's staging file into one batch; STATE
messages go out through the `StateTracker`, which writes each one only after the records
received before it are committed.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from target_bigquery_lite import batch_files, messages
from target_bigquery_lite.batch_rows import stage_batch_file
from target_bigquery_lite.committer import Batch, StreamBatch
from target_bigquery_lite.config import Settings
from target_bigquery_lite.errors import InputError, RecordError
from target_bigquery_lite.progress import Progress
from target_bigquery_lite.reader import LineReader
from target_bigquery_lite.stage import StageWriter, StagingArea
from target_bigquery_lite.state import StateTracker
from target_bigquery_lite.streams import Stream, build_stream
from target_bigquery_lite.warehouse import Warehouse

BUSY_POLL_SECONDS = 1.0

log = logging.getLogger("target_bigquery_lite")


class Runner:
    """One run of the target over one input."""

    def __init__(self, settings: Settings, out: BinaryIO) -> None:
        """Prepare a run; nothing touches BigQuery until the first SCHEMA."""
        self.settings = settings
        self.run_id = f"{datetime.now(UTC):%Y%m%d%H%M%S}_{uuid.uuid4().hex[:8]}"
        self.state = StateTracker(out)
        self.progress = Progress()
        self.area = StagingArea(Path(settings.staging_dir), self.run_id)
        self.streams: dict[str, Stream] = {}
        self.seq = 0
        self.batch_no = 1
        self.flush_at = settings.batch_max_rows
        self.batch_started: float | None = None
        self.activations: dict[str, int] = {}
        self.unknown_types: set[str] = set()
        self.received_at = datetime.now(UTC).isoformat()
        self.warehouse = Warehouse(settings, self.run_id, self._committed)

    def run(self, fd: int) -> None:
        """Process the input on `fd` to its end; raise a `TargetError` on failure."""
        reader = LineReader(fd)
        succeeded = False
        try:
            try:
                while (lines := reader.read_lines(self._timeout())) is not None:
                    self._process(lines, reader.lines_read - len(lines), reader.ended_mid_line)
                    self._tick()
            except RecursionError:  # a schema or record nested too deeply to check or map
                raise InputError(
                    f"a message up to input line {reader.lines_read} nests objects or arrays "
                    "too deeply to process"
                ) from None
            self._finish()
            succeeded = True
        except BaseException:
            self.state.stop()
            for stream in self.streams.values():
                if stream.writer is not None:
                    stream.writer.abandon()
            raise
        finally:
            self.progress.summary(succeeded)

    def kept_files(self) -> list[Path]:
        """Staging files left on disk (after a failure)."""
        return self.area.leftovers()

    # --- messages -------------------------------------------------------------------------

    def _process(self, lines: list[bytes], base: int, at_end: bool) -> None:
        """Handle a chunk of lines; RECORD inline (the hot path), the rest by `_dispatch`."""
        streams, loads = self.streams, orjson.loads
        if self.settings.add_metadata_columns:  # _sdc_received_at: one clock read per chunk
            self.received_at = datetime.now(UTC).isoformat()
            for stream in streams.values():
                stream.received_at = self.received_at
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
            stream = streams.get(message.get("stream"))  # type: ignore[arg-type]
            record = message.get("record")
            if stream is None or type(record) is not dict:
                raise self._bad_record(message, line_no)
            if "version" in message and not stream.versioned:
                self._make_versioned(stream)
            self.seq += 1
            try:
                stream.stage(record, message, self.seq)
            except RecordError as exc:
                raise RecordError(f"{exc} (input line {line_no})") from None
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
        if kind == "SCHEMA":
            self._on_schema(messages.parse_schema(message, line_no))
        elif kind == "STATE":  # parsed again exactly: the state is passed on as the tap sent it
            exact = messages.parse_line_exactly(line, line_no)
            self.state.received(messages.parse_state(exact, line_no).value, self.seq)
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
            return InputError(f"RECORD for stream '{name}' on line {line_no} before its SCHEMA")
        return InputError(f"RECORD for stream '{name}' on line {line_no} has no 'record' object")

    def _on_schema(self, message: messages.SchemaMessage) -> None:
        old = self.streams.get(message.stream)
        if old is not None and old.message == message:
            return  # taps repeat SCHEMA messages; nothing changed
        counts = self.progress.track(message.stream, "", "")
        stream = build_stream(message, self.settings, counts)
        for other in self.streams.values():
            if other.table == stream.table and other.message.stream != message.stream:
                raise InputError(
                    f"streams '{other.message.stream}' and '{message.stream}' would both "
                    f"load table {stream.table}"
                )
        if old is not None:
            self._drain("schema change")  # records staged so far load with the old plan
            stream.versioned, stream.active_version = old.versioned, old.active_version
        counts.table, counts.method = stream.table, stream.method
        stream.received_at = self.received_at
        self._prepare(stream)
        self.streams[message.stream] = stream

    def _on_activate(self, message: messages.ActivateVersionMessage) -> None:
        stream = self.streams.get(message.stream)
        if stream is None:
            raise InputError(f"ACTIVATE_VERSION for stream '{message.stream}' before its SCHEMA")
        if not stream.versioned:
            self._make_versioned(stream)
        stream.active_version = message.version
        self.activations[message.stream] = message.version

    def _make_versioned(self, stream: Stream) -> None:
        """Records carry versions from now on: add the version column first."""
        self._drain("records carry versions")
        stream.versioned = True
        self._prepare(stream)

    def _on_batch(self, message: messages.BatchMessage, raw: dict[str, Any]) -> None:
        stream = self.streams.get(message.stream)
        if stream is None:
            raise InputError(f"BATCH for stream '{message.stream}' before its SCHEMA")
        if raw.get("version") is not None and not stream.versioned:
            self._make_versioned(stream)
        for url in message.manifest:
            path = batch_files.manifest_path(url, message.stream)
            self.seq = stage_batch_file(stream, path, raw, self.seq)
            if self.seq >= self.flush_at:
                self._flush("batch_max_rows")

    # --- flushing -------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        """How long the reader may wait for input before a timer is due."""
        if self.batch_started is not None:
            deadline = self.batch_started + self.settings.batch_max_seconds
            return max(0.0, deadline - time.monotonic())
        return BUSY_POLL_SECONDS if self.warehouse.busy else None

    def _tick(self) -> None:
        """Once per input chunk: failures, flush timers and sizes, progress."""
        now = time.monotonic()
        self.warehouse.check()
        writers = [s.writer for s in self.streams.values() if s.writer is not None]
        if writers:
            if self.batch_started is None:
                self.batch_started = now
            if now - self.batch_started >= self.settings.batch_max_seconds:
                self._flush("batch_max_seconds")
            elif sum(writer.size() for writer in writers) >= self.settings.batch_max_bytes:
                self._flush("batch_max_bytes")
        self.progress.maybe_report(now)

    def _flush(self, reason: str) -> None:
        """Close every stream's staging file into one batch and hand it to the committer."""
        items = []
        for stream in self.streams.values():
            if stream.writer is None:
                continue
            assert stream.plan is not None
            items.append(StreamBatch(stream.plan, stream.writer.close()))
            stream.writer = None
            stream.counts.batches += 1
        self.flush_at = self.seq + self.settings.batch_max_rows
        self.batch_started = None
        if not items:
            return
        batch = Batch(self.batch_no, self.seq, tuple(items))
        self.batch_no += 1
        log.info("flush %d (%s): %d rows", batch.number, reason, sum(i.staged.rows for i in items))
        self.warehouse.submit(batch, lambda: self.state.submitted(batch.end_seq))

    def _drain(self, reason: str) -> None:
        """Flush, then wait until everything is committed."""
        self._flush(reason)
        self.warehouse.wait()

    def _committed(self, batch: Batch) -> None:
        """Runs in the committer thread once `batch` is committed: free disk, pass state on."""
        for item in batch.streams:
            self.area.remove(item.staged)
            if item.plan.method != "overwrite":
                self.progress.streams[item.plan.stream].committed += item.staged.rows
        self.state.committed(batch.end_seq)

    def _finish(self) -> None:
        """Clean end of input: commit everything, finalize overwrite/versions, final state."""
        self._drain("end of input")
        for stream in self.streams.values():
            if stream.method == "overwrite":
                self.warehouse.replace(stream)
                stream.counts.committed = stream.counts.received
        for name, version in self.activations.items():
            self.warehouse.delete_old_versions(self.streams[name], version)
        self.state.finish(self.seq)
        self.area.clean_up()

    def _prepare(self, stream: Stream) -> None:
        """Tables first (created or evolved), then the stream may stage records."""
        self.warehouse.prepare(stream)
        stream.open_writer = lambda seq: self._open_writer(stream, seq)

    def _open_writer(self, stream: Stream, seq: int) -> StageWriter:
        """A staging file for the batch being built, starting with record `seq`."""
        if stream.method == "overwrite":  # its rows reach the final table only at the end
            self.state.hold(seq)
        return self.area.open(stream.table, self.batch_no)
