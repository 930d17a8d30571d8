"""Read several child-process pipes at once, line by line, in the calling thread.

Dagster's log calls are made from the op's own thread, and a pipe left unread would stall
the process writing to it, so every pipe of a run is drained through one selector.
"""

from __future__ import annotations

import os
import re
import selectors
from collections.abc import Iterator, Mapping
from typing import IO

READ_SIZE = 65536
SUMMARY = re.compile(r"summary (\S+) -> \S+ \(\w+\): received \d+, committed (\d+)")
"""target-bigquery-lite's end-of-run line per stream (its progress module)."""


def read_lines(pipes: Mapping[str, IO[bytes]]) -> Iterator[tuple[str, bytes]]:
    """Yield `(name, line)` from every pipe as lines arrive, until all of them are closed.

    A line is yielded without its newline; a last line without one is yielded at the end.
    """
    selector = selectors.DefaultSelector()
    buffers: dict[str, bytes] = {}
    for name, pipe in pipes.items():
        selector.register(pipe, selectors.EVENT_READ, name)
        buffers[name] = b""
    try:
        while selector.get_map():
            for key, _ in selector.select():
                name = key.data
                chunk = os.read(key.fd, READ_SIZE)
                if not chunk:
                    selector.unregister(key.fileobj)
                    if buffers[name]:
                        yield name, buffers[name]
                    continue
                *lines, buffers[name] = (buffers[name] + chunk).split(b"\n")
                for line in lines:
                    yield name, line
    finally:
        selector.close()


def committed_rows(line: str, totals: dict[str, int]) -> None:
    """Record the committed row count of a target summary line in `totals` (by stream)."""
    found = SUMMARY.search(line)
    if found:
        totals[found.group(1)] = int(found.group(2))
