"""Singer output: msgspec encoding, written in large blocks, flushed with each STATE.

singer-sdk's `MsgSpecWriter` flushes stdout after every message, and under
`PYTHONUNBUFFERED=1` (common in containers) every write is a system call anyway: one
or two per record. This writer gathers RECORD lines in its own buffer and hands them
to stdout in blocks, and whenever any other message (SCHEMA, STATE, BATCH...) goes
out. That keeps the guarantee that matters: a STATE never reaches the target before
the records it covers (one ordered byte stream), and a killed tap loses only records
that no emitted STATE vouched for.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from singer_sdk.contrib.msgspec import MsgSpecWriter, encoder
from singer_sdk.singerlib import RecordMessage
from singer_sdk.singerlib.encoding.simple import Message

BLOCK_BYTES = 1 << 16
"""Records gathered before a write: ~400 rows, small next to a pipe's buffer."""


class BlockWriter(MsgSpecWriter):
    """`MsgSpecWriter` that writes records in blocks and flushes at every other message."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = bytearray()

    def write_message(self, message: Message) -> None:
        """Queue a RECORD line; write the queue, then any other message, and flush.

        Args:
            message: The message to write.
        """
        self.pending += self.format_message(message)
        if type(message) is not RecordMessage or len(self.pending) >= BLOCK_BYTES:
            self.flush(flush_stdout=type(message) is not RecordMessage)

    def write_record(self, prefix: bytes, record: dict[str, Any], suffix: bytes) -> None:
        """Queue a RECORD line built from its parts, encoding the record in place.

        The line is byte for byte what `write_message(RecordMessage(...))` writes (the
        SDK's msgspec encoder, same key order), without building a message object and
        a dict per record.

        Args:
            prefix: `record_prefix(stream)`.
            record: The record.
            suffix: `record_suffix(time_extracted)`.
        """
        pending = self.pending
        pending += prefix
        encoder.encode_into(record, pending, -1)
        pending += suffix
        if len(pending) >= BLOCK_BYTES:
            self.flush(flush_stdout=False)

    def flush(self, *, flush_stdout: bool = True) -> None:
        """Write the queued lines to stdout (looked up now: tests redirect it).

        Args:
            flush_stdout: Also flush stdout's own buffer, so the target sees it now.
        """
        sys.stdout.buffer.write(self.pending)
        self.pending.clear()
        if flush_stdout:
            sys.stdout.flush()


def record_prefix(stream: str) -> bytes:
    """The start of a RECORD line of `stream`, up to its record object."""
    return b'{"type":"RECORD","stream":' + encoder.encode(stream) + b',"record":'


def record_suffix(time_extracted: datetime) -> bytes:
    """The end of a RECORD line after its record object (no `version`: incremental)."""
    return b',"time_extracted":' + encoder.encode(time_extracted) + b"}\n"
