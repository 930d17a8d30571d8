"""BATCH message files: resolve `file://` manifest URLs, read plain or gzip JSONL, copy raw.

singer-sdk's jsonl encoder always gzips (whatever `compression` says), so compression is
detected from the file's first bytes rather than trusted. Files are read in 1 MiB blocks.
When no record needs checking or rewriting, blocks are copied into the staging file as
they are (decompressed, since the emulator rejects gzip uploads and one staging file per
stream keeps one load job per batch), at memory-copy speed; for merge streams each line
only gets the arrival-sequence column spliced in front, still without parsing JSON.
When records need checking against a flat schema, a whole block of lines is checked by one
msgspec call (`checked_rows`).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

import msgspec

from target_bigquery_lite.errors import InputError
from target_bigquery_lite.identifiers import shown

BLOCK_SIZE = 1 << 20
# Blocks checked by msgspec are smaller: the ~800 row objects decoded from 128 KiB reuse the
# memory that the previous block's rows freed, where 1 MiB blocks took fresh pages each time
# (8x the page faults, +0.15 s of system time per million rows).
CHECK_BLOCK_SIZE = 1 << 17
GZIP_MAGIC = b"\x1f\x8b"
# A line that does not start with "{" (blank or indented), after the block's first line.
log = logging.getLogger("target_bigquery_lite")
_ODD_LINE = re.compile(rb"\n[^{]")


def manifest_path(url: str, stream: str, roots: tuple[str, ...]) -> Path:
    """The local path of a manifest entry, once it is known to lie inside `roots`.

    A manifest names files the target will read and load into a table, so it must not be
    able to name any file the target can read (a credentials file, say): the path, with
    symlinks resolved, must be inside one of the configured `batch_roots`. Nothing outside
    them is opened, or even looked for.

    Raises:
        InputError: for anything but a `file://` URL (or a plain absolute path) inside the
            roots, or a file that does not exist.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("file", "") or parsed.netloc not in ("", "localhost"):
        raise InputError(
            f"BATCH for stream '{shown(stream)}': {url[:300]} is not a local file:// URL "
            "(only local batch files are supported)"
        )
    path = Path(unquote(parsed.path))
    if not path.is_absolute():
        raise InputError(
            f"BATCH for stream '{shown(stream)}': batch file {path} is not an absolute path"
        )
    if not roots:
        raise InputError(
            f"BATCH for stream '{shown(stream)}': batch files are read only from the "
            "folders listed in the batch_roots setting, and it is empty; set it to the tap's "
            "batch folder (its batch_config storage root)"
        )
    real = Path(os.path.realpath(path))
    if not any(real.is_relative_to(root) for root in roots):
        raise InputError(
            f"BATCH for stream '{shown(stream)}': {path} is outside batch_roots "
            f"({', '.join(roots)}); refusing to read it"
        )
    if not real.is_file():
        raise InputError(f"BATCH for stream '{shown(stream)}': batch file {path} does not exist")
    return real


def unreadable(stream: str, path: Path, exc: BaseException) -> InputError:
    """The error for a batch file that cannot be read to its end: gone, truncated, corrupt."""
    if isinstance(exc, EOFError | zlib.error | gzip.BadGzipFile):
        return InputError(
            f"BATCH for stream '{shown(stream)}': {path} is not a complete gzip file "
            f"({exc}); the tap "
            "wrote it only in part, or it was damaged since"
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return InputError(f"BATCH for stream '{shown(stream)}': cannot read {path}: {reason}")


def open_batch_file(path: Path) -> BinaryIO:
    """Open a batch file for reading, decompressing it if it starts with the gzip magic."""
    with path.open("rb") as probe:
        compressed = probe.read(2) == GZIP_MAGIC
    if compressed:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def iter_blocks(path: Path, size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """A batch file in blocks of whole lines, each block ending with a newline.

    Blocks are about `size` bytes (more when a line is longer); an unterminated last line
    gets its newline here.
    """
    with open_batch_file(path) as source:
        pending: list[bytes] = []
        while block := source.read(size):
            cut = block.rfind(b"\n") + 1
            if not cut:  # inside a long line
                pending.append(block)
                continue
            head = block if cut == len(block) else block[:cut]
            yield b"".join([*pending, head]) if pending else head
            pending = [block[cut:]] if cut < len(block) else []
        if pending:
            yield b"".join(pending) + b"\n"


def iter_lines(path: Path) -> Iterator[bytes]:
    """The non-blank lines of a batch file, read block by block."""
    for block in iter_blocks(path):
        yield from (line for line in block.split(b"\n") if line.strip())


def raw_blocks(path: Path) -> Iterator[tuple[bytes, int]]:
    """A batch file's rows unchanged, as (block, rows in it); the last line gets its newline."""
    last = b"\n"
    with open_batch_file(path) as source:
        while block := source.read(BLOCK_SIZE):
            rows = block.count(b"\n")
            last = block[-1:]
            yield block, rows
    if last != b"\n":
        yield b"\n", 1


def blocks_with_sequence(
    path: Path, column: str, first_seq: int, stream: str
) -> Iterator[tuple[bytes, int]]:
    """Rows with `"<column>": <seq>` put first in each object, as (block, rows in it).

    Raises:
        InputError: when a line is not a JSON object.
    """
    prefix = b'{"' + column.encode() + b'":'
    seq, line_no = first_seq, 0
    for block in iter_blocks(path):
        out = []
        for line in block.split(b"\n"):
            body = line.strip()
            if not body:
                continue
            line_no += 1
            if body[:1] != b"{":
                raise InputError(
                    f"BATCH for '{shown(stream)}': {path} line {line_no} is not a JSON object"
                )
            rest = body[1:].lstrip()
            separator = b"" if rest[:1] == b"}" else b","
            out.append(b"%s%d%s%s\n" % (prefix, seq, separator, rest))
            seq += 1
        if out:
            yield b"".join(out), len(out)


def checked_rows(block: bytes, decode: Callable[[bytes], list[Any]]) -> list[Any] | None:
    """The rows of `block` if `decode` accepts each of its lines as one row; else None.

    `decode` is a msgspec `decode_lines` (see `validate.block_decoder`). None also for a
    block with a line that does not start with "{" (a blank or indented line) or that holds
    several values, which msgspec would count differently from the row path: such blocks
    must be checked row by row.
    """
    if block[:1] != b"{" or _ODD_LINE.search(block):
        return None
    try:
        rows = decode(block)
    except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError is a DecodeError
        return None
    return rows if len(rows) == block.count(b"\n") else None


class ConsumedFiles:
    """BATCH files whose rows are staged, deleted once all their rows are committed.

    With `delete_batch_files`, the tap's batch folder does not grow run after run: a file
    goes when the commit watermark passes its last row (for rows that commit only at the
    end of the run, at the end). A file that cannot be deleted is logged, never fatal.
    """

    def __init__(self) -> None:
        """Nothing consumed yet."""
        self._files: list[tuple[int, Path]] = []

    def add(self, path: Path, last_seq: int) -> None:
        """`path` is staged; its last row has sequence number `last_seq`."""
        self._files.append((last_seq, path))

    def release(self, watermark: int) -> None:
        """Delete the files whose rows are all committed (sequence numbers <= `watermark`)."""
        done = [path for last, path in self._files if last <= watermark]
        self._files = [(last, path) for last, path in self._files if last > watermark]
        for path in done:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not delete the committed batch file %s: %s", path, exc)
