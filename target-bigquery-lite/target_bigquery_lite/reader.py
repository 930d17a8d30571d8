"""Read the input in large chunks and split it into lines, waking up when a timer is due.

One `os.read` of up to 1 MiB yields thousands of lines, so the per-line cost is one slice of
a `bytes.split`. Waiting goes through `select` with a timeout and a wake-up descriptor (the
committer's), so a tap that goes quiet still gets its staged records flushed after
`batch_max_seconds`, and its states passed on as soon as a batch commits, with no
per-record clock reads.
"""

from __future__ import annotations

import os
import select

CHUNK_SIZE = 1 << 20


class LineReader:
    """Complete lines from a file descriptor; the unterminated tail is kept until EOF."""

    def __init__(self, fd: int, chunk_size: int = CHUNK_SIZE) -> None:
        """Read from `fd`, which may be a pipe, a terminal or a regular file."""
        self._fd = fd
        self._chunk_size = chunk_size
        self._tail: list[bytes] = []
        self.lines_read = 0
        self.ended_mid_line = False

    def read_lines(self, timeout: float | None, wake_fd: int | None = None) -> list[bytes] | None:
        """The next complete lines (`[]`: nothing yet, timed out or woken); None at EOF.

        Returns early with `[]` when `wake_fd` becomes readable (its bytes are drained).
        At end of input an unterminated last line is returned on its own (it may be a
        complete message without its newline) and `ended_mid_line` is set, so the caller can
        tell a truncated message from a missing final newline.
        """
        if timeout is not None or wake_fd is not None:
            watched = [self._fd] if wake_fd is None else [self._fd, wake_fd]
            wait = None if timeout is None else max(timeout, 0.0)
            ready, _, _ = select.select(watched, [], [], wait)
            if wake_fd is not None and wake_fd in ready:
                _drain(wake_fd)
            if self._fd not in ready:
                return []
        chunk = os.read(self._fd, self._chunk_size)
        if not chunk:
            if not self._tail:
                return None
            tail = b"".join(self._tail)
            self._tail = []
            self.ended_mid_line = True
            self.lines_read += 1
            return [tail]
        if b"\n" not in chunk:  # part of a long line: keep the pieces, join once
            self._tail.append(chunk)
            return []
        if self._tail:
            self._tail.append(chunk)
            chunk = b"".join(self._tail)
        lines = chunk.split(b"\n")
        last = lines.pop()
        self._tail = [last] if last else []
        self.lines_read += len(lines)
        return lines


def _drain(fd: int) -> None:
    """Read whatever the (non-blocking) wake-up pipe holds."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
