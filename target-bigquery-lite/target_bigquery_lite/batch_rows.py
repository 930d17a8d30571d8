"""Stage the rows of one BATCH file: copied raw, checked a block at a time, or row by row.

Which way depends on what the stream's rows need (decided per SCHEMA, see `StreamSpec`):
- nothing to check or rewrite (`validate_records: false`, ...): the file is copied into
  the staging file without parsing JSON;
- checking against a flat schema, nothing to rewrite: each 128 KiB block is decoded and
  checked by one msgspec call and, if every line passes, staged by one msgspec encode. A
  block msgspec refuses goes row by row, which gives the exact verdict (msgspec is stricter
  in corners) and the error message naming the line;
- anything else: row by row, each row parsed and staged like a RECORD's.
Rows are numbered and counted the same way in all three, so errors and sequence numbers
do not depend on the way taken.

`staged_chunks` yields the staging lines a block at a time and leaves writing them to the
runner, which may flush a batch between two chunks (`batch_max_rows` and `batch_max_bytes`
apply within a file at block granularity).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from target_bigquery_lite import batch_files, messages
from target_bigquery_lite.columns import SEQUENCE_COLUMN
from target_bigquery_lite.errors import InputError, RecordError
from target_bigquery_lite.streams import StreamSpec
from target_bigquery_lite.validate import SEQUENCE_FIELD
from target_bigquery_lite.values import Checker, UnloadableError

_encode_lines = msgspec.json.Encoder().encode_lines
CHUNK_ROWS = 1000


@dataclass(frozen=True)
class Chunk:
    """Staging lines for `rows` rows of a batch file, the first numbered `first_seq`."""

    data: bytes
    rows: int
    first_seq: int


@dataclass(frozen=True)
class RowContext:
    """What rows of a BATCH message are staged with (see `StreamSpec.encode`)."""

    message: dict[str, Any]
    received_at: str
    version: int | None


def staged_chunks(
    spec: StreamSpec, path: Path, context: RowContext, seq: int, number: int
) -> Iterator[Chunk]:
    """The staging lines of every row of the batch file `path`, a block at a time.

    Args:
        spec: The BATCH message's stream.
        path: The local batch file.
        context: The BATCH message (its `version`, if any, applies to every row) and the rest.
        seq: The sequence number of the last record staged before this file.
        number: The number, within its stream, of the file's first row.

    Raises:
        InputError: for a row that is not a JSON object (or a file that cannot be read).
        RecordError: for a row its schema refuses, naming the file and its line.
    """
    try:
        if spec.raw_batches_ok:
            yield from _copied(spec, path, seq)
            return
        decoder = spec.batch_decoder
        if decoder is None:
            lines = batch_files.iter_lines(path)
            yield from _row_by_row(spec, path, lines, context, seq=seq, number=number, line=0)
            return
        yield from _checked_blocks(spec, path, context, decoder, seq=seq, number=number)
    except (OSError, EOFError, zlib.error) as exc:
        raise batch_files.unreadable(spec.name, path, exc) from None


def _checked_blocks(
    spec: StreamSpec,
    path: Path,
    context: RowContext,
    decoder: msgspec.json.Decoder,
    *,
    seq: int,
    number: int,
) -> Iterator[Chunk]:
    """Check the file a block at a time; stage good blocks re-encoded, others row by row."""
    decode, line = decoder.decode_lines, 0
    for block in batch_files.iter_blocks(path, batch_files.CHECK_BLOCK_SIZE):
        rows = batch_files.checked_rows(block, decode)
        if rows is not None and spec.block_checks and not _values_pass(rows, spec.block_checks):
            rows = None
        if rows is None:
            lines = block.split(b"\n")
            for chunk in _row_by_row(spec, path, lines, context, seq=seq, number=number, line=line):
                yield chunk
                seq, number, line = seq + chunk.rows, number + chunk.rows, line + chunk.rows
            continue
        if spec.sequenced:
            for row, row_seq in zip(rows, itertools.count(spec.seq_base + seq + 1), strict=False):
                setattr(row, SEQUENCE_FIELD, row_seq)
        yield Chunk(_encode_lines(rows), len(rows), seq + 1)
        seq, number, line = seq + len(rows), number + len(rows), line + len(rows)


def _values_pass(rows: list[Any], checks: tuple[tuple[str, str, Checker], ...]) -> bool:
    """Whether every decoded row's values pass `values`' checks (else: the row path)."""
    try:
        for row in rows:
            for attribute, column, check in checks:
                value = getattr(row, attribute)
                if value is not None:
                    check(value, column)
    except UnloadableError:
        return False
    return True


def _row_by_row(
    spec: StreamSpec,
    path: Path,
    lines: Iterable[bytes],
    context: RowContext,
    *,
    seq: int,
    number: int,
    line: int,
) -> Iterator[Chunk]:
    """Parse and stage rows one by one, after record `seq` and line `line` of the file.

    Blank lines are skipped and not counted. Yields one chunk per `CHUNK_ROWS` rows.
    """
    staged: list[bytes] = []
    first = seq + 1
    for text in lines:
        if not text.strip():
            continue
        line += 1
        seq += 1
        try:
            record = messages.parse_line(text, line, f"BATCH file {path}", exact=spec.exact)
            staged.append(
                spec.encode(
                    record, context.message, seq, number, context.received_at, context.version
                )
            )
        except InputError as exc:
            if staged:  # the rows before it are staged too, as the failed run keeps them
                yield Chunk(b"".join(staged), len(staged), first)
            if isinstance(exc, RecordError):
                raise RecordError(f"{exc} ({path} line {line})") from None
            raise
        number += 1
        if len(staged) >= CHUNK_ROWS:
            yield Chunk(b"".join(staged), len(staged), first)
            staged, first = [], seq + 1
    if staged:
        yield Chunk(b"".join(staged), len(staged), first)


def _copied(spec: StreamSpec, path: Path, seq: int) -> Iterator[Chunk]:
    """The file unparsed, block by block (the arrival sequence spliced in when needed)."""
    if spec.sequenced:
        for block, rows in batch_files.blocks_with_sequence(
            path, SEQUENCE_COLUMN, spec.seq_base + seq + 1, spec.name
        ):
            yield Chunk(block, rows, seq + 1)
            seq += rows
        return
    for block, rows in batch_files.raw_blocks(path):
        yield Chunk(block, rows, seq + 1)
        seq += rows
