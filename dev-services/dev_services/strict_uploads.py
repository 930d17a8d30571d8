"""Read the data of load-job uploads as they pass: multipart bodies and resumable sessions.

A multipart upload carries the job's metadata and the whole file in one request. A
resumable one starts with the metadata (POST), then sends the file in chunks (PUT, 8 MiB
each from the target) until the one whose `Content-Range` reaches the total size; the
front feeds each chunk to the session's checker, so nothing but one partial line is
kept in memory. gzip-compressed data is decompressed on the way.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from dev_services.load_checks import NdjsonChecker

_RANGE_RE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass
class UploadSession:
    """One load job's upload: its metadata and the checker its data is fed to."""

    metadata: dict[str, Any]
    checker: NdjsonChecker | None
    inflater: Any = None
    received: int = 0
    chunks: list[int] = field(default_factory=list)

    def feed(self, data: bytes) -> None:
        """Check another piece of the file."""
        self.received += len(data)
        if self.checker is None or not data:
            return
        if self.inflater is None and not self.chunks and data[:2] == b"\x1f\x8b":
            self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.chunks.append(len(data))
        self.checker.feed(self.inflater.decompress(data) if self.inflater else data)

    def finish(self) -> None:
        """The file is complete: check its last line."""
        if self.checker is not None:
            if self.inflater is not None:
                self.checker.feed(self.inflater.flush())
            self.checker.finish()


def is_final_chunk(content_range: str | None) -> bool:
    """Whether a resumable PUT with this `Content-Range` completes the upload."""
    if not content_range:
        return True  # a single PUT with the whole file
    match = _RANGE_RE.fullmatch(content_range.strip())
    if match is None:
        return False
    _start, end, total = match.groups()
    if total == "*":
        return False
    return end is None or int(end) + 1 == int(total)


def split_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes]:
    """The (metadata, data) of a `multipart/related` upload body.

    Raises:
        ValueError: when the body is not a two-part upload.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise ValueError("multipart upload without a boundary")
    delimiter = b"--" + match.group(1).encode()
    parts = []
    for piece in body.split(delimiter)[1:]:
        if piece.startswith(b"--"):
            break
        _head, _, content = piece.partition(b"\r\n\r\n")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        parts.append(content)
    if len(parts) != 2:
        raise ValueError(f"multipart upload with {len(parts)} parts, expected 2")
    return json.loads(parts[0]), parts[1]
