"""Stage the rows of one BATCH file: copied raw, checked a block at a time, or row by row.

Which way depends on what the stream's rows need (decided per SCHEMA, see `Stream`):
- nothing to check or rewrite (`validate_records: false`, ...): the file is copied into
  the staging file without parsing JSON;
- checking against a flat schema, nothing to rewrite: each 128 KiB block is decoded and
  checked by one msgspec call and, if every line passes, staged by one msgspec encode
  (~0.4 us a row in all, against ~1.7 us to parse and stage each row). A block msgspec
  refuses goes row by row, which gives the exact verdict (msgspec is stricter in corners)
  and the error message naming the line;
- anything else: row by row, each row parsed and staged like a RECORD's.
Rows are numbered and counted the same way in all three, so errors and sequence numbers
do not depend on the way taken.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from target_bigquery_lite import batch_files, messages
from target_bigquery_lite.errors import InputError, RecordError, StagingError
from target_bigquery_lite.merge import SEQUENCE_COLUMN
from target_bigquery_lite.stage import StageWriter
from target_bigquery_lite.streams import Stream
from target_bigquery_lite.validate import SEQUENCE_FIELD

_encode_lines = msgspec.json.Encoder().encode_lines


def stage_batch_file(stream: Stream, path: Path, message: dict[str, Any], seq: int) -> int:
    """Stage every row of the batch file `path`; the rows get numbers after `seq`.

    Args:
        stream: The BATCH message's stream.
        path: The local batch file.
        message: The BATCH message itself (its `version`, if any, applies to every row).
        seq: The sequence number of the last record staged before this file.

    Returns:
        The sequence number of the file's last row (`seq` for an empty file).

    Raises:
        InputError: for a row that is not a JSON object (or a file that cannot be copied).
        RecordError: for a row its schema refuses, naming the file and its line.
        StagingError: when the staging file cannot be written.
    """
    if stream.raw_batches_ok:
        return _copy_file(stream, path, seq)
    decoder = stream.batch_decoder
    if decoder is None:
        lines = batch_files.iter_lines(path)
        seq, _ = _stage_rows(stream, path, lines, message, seq=seq, row_no=0)
        return seq
    return _check_blocks(stream, path, message, seq, decoder)


def _check_blocks(
    stream: Stream, path: Path, message: dict[str, Any], seq: int, decoder: msgspec.json.Decoder
) -> int:
    """Check the file a block at a time; stage good blocks re-encoded, others row by row."""
    decode, row_no = decoder.decode_lines, 0
    for block in batch_files.iter_blocks(path, batch_files.CHECK_BLOCK_SIZE):
        rows = batch_files.checked_rows(block, decode)
        if rows is None:
            lines = block.split(b"\n")
            seq, row_no = _stage_rows(stream, path, lines, message, seq=seq, row_no=row_no)
            continue
        if stream.sequenced:
            for row, row_seq in zip(rows, itertools.count(seq + 1), strict=False):
                setattr(row, SEQUENCE_FIELD, row_seq)
        writer = _writer(stream, seq + 1)
        try:
            writer.write(_encode_lines(rows))
        except OSError as exc:
            raise StagingError.writing(writer.path, exc) from None
        seq, row_no = seq + len(rows), row_no + len(rows)
        writer.rows += len(rows)
        stream.counts.received += len(rows)
    return seq


def _stage_rows(
    stream: Stream,
    path: Path,
    lines: Iterable[bytes],
    message: dict[str, Any],
    *,
    seq: int,
    row_no: int,
) -> tuple[int, int]:
    """Parse and stage rows one by one, after record `seq` and line `row_no` of the file.

    Blank lines are skipped and not counted. Returns the last row's seq and line number.
    """
    for line in lines:
        if not line.strip():
            continue
        row_no += 1
        record = messages.parse_line(line, row_no)
        seq += 1
        try:
            stream.stage(record, message, seq)
        except RecordError as exc:
            raise RecordError(f"{exc} ({path} line {row_no})") from None
    return seq, row_no


def _copy_file(stream: Stream, path: Path, seq: int) -> int:
    """Copy the file unparsed (the arrival sequence spliced in for merges)."""
    writer = _writer(stream, seq + 1)
    try:
        if stream.sequenced:
            rows = batch_files.copy_rows_with_sequence(
                path, writer.write, SEQUENCE_COLUMN, seq + 1, stream.message.stream
            )
        else:
            rows = batch_files.copy_rows(path, writer.write)
    except OSError as exc:
        if exc.filename is not None:  # reading the batch file, not writing the staging one
            raise InputError(
                f"BATCH for stream '{stream.message.stream}': cannot read {path}: "
                f"{exc.strerror or exc}"
            ) from None
        raise StagingError.writing(writer.path, exc) from None
    writer.rows += rows
    stream.counts.received += rows
    return seq + rows


def _writer(stream: Stream, seq: int) -> StageWriter:
    """The stream's staging file, opened for record `seq` if none is open yet."""
    if stream.writer is None:
        assert stream.open_writer is not None
        stream.writer = stream.open_writer(seq)
    return stream.writer
