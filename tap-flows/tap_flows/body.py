"""A response body read in large chunks, within an overall deadline per request.

`request_timeout` bounds each socket read, so a server sending a byte every few seconds
keeps a request alive for ever. Reading with `read1` (one socket read at a time, merged
into chunks of CHUNK_BYTES for the parsers) lets the clock be checked after every read,
once per piece, never per row: past `request_deadline_seconds` the request fails with
a timeout and is sent again from the last row (`tap_flows.retry`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import requests
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError, SSLError

from tap_flows.ndjson import CHUNK_BYTES

if TYPE_CHECKING:
    from collections.abc import Iterator


class DeadlineExceededError(requests.exceptions.Timeout):
    """The request took longer than `request_deadline_seconds`: a timeout, retried."""

    def __init__(self, deadline_seconds: float) -> None:
        """Name the setting and its value."""
        super().__init__(
            f"the response took longer than request_deadline_seconds={deadline_seconds}"
        )


def body_chunks(
    response: requests.Response, deadline_seconds: float, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """The body in chunks of up to `chunk_bytes`, ending by `deadline_seconds` after sending.

    urllib3's errors become the `requests` ones `iter_content` raises, so the retry path
    sees the same exceptions.

    Args:
        response: A response opened with `stream=True`.
        deadline_seconds: The `request_deadline_seconds` setting.
        chunk_bytes: The largest chunk to yield.

    Yields:
        The body's bytes as they arrive (what arrived before the deadline included).

    Raises:
        DeadlineExceededError: The body did not end in time.
    """
    deadline = time.monotonic() - response.elapsed.total_seconds() + deadline_seconds
    read = response.raw.read1
    while True:
        pieces: list[bytes] = []
        size = 0
        try:
            while size < chunk_bytes and (piece := read(chunk_bytes - size, decode_content=True)):
                pieces.append(piece)
                size += len(piece)
                if time.monotonic() > deadline:
                    raise DeadlineExceededError(deadline_seconds)
        except (DeadlineExceededError, *_URLLIB3_ERRORS) as exc:
            # What arrived before the failure is progress: the retry resumes after it.
            if pieces:
                yield b"".join(pieces)
            error = _as_requests_error(exc)
            if error is exc:
                raise
            raise error from exc
        if pieces:
            yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if size < chunk_bytes:
            return


_URLLIB3_ERRORS = (ProtocolError, DecodeError, ReadTimeoutError, SSLError)


def _as_requests_error(exc: Exception) -> Exception:
    """The `requests` exception `iter_content` raises for urllib3's `exc`."""
    if isinstance(exc, ProtocolError):
        return requests.exceptions.ChunkedEncodingError(exc)
    if isinstance(exc, DecodeError):
        return requests.exceptions.ContentDecodingError(exc)
    if isinstance(exc, ReadTimeoutError):
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, SSLError):
        return requests.exceptions.SSLError(exc)
    return exc
