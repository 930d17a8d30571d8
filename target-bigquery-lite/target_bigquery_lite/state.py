"""STATE emission: a state goes out only when every record received before it is committed.

Each record gets the next sequence number as it arrives; a STATE is tagged with the number
of records received before it. The committer reports a *watermark*: all records up to it
are in their final tables. A state may go out once `tag <= watermark`. That one comparison
is the whole guarantee, and it holds however flushes, batches and threads interleave:

* a state received while nothing is pending has `tag <= watermark` and goes out at once;
* a state received with records pending waits for the flush that covers them;
* `overwrite` streams commit only at the end of the run (their rows replace the table in one
  transaction), so their first record *holds* the watermark below itself until then;
* after any failure `stop()` is called first, and nothing is written after it.

Only the runner's (main) thread calls it: the committer reports commits on a queue that
the runner drains, so states are written in one thread, in order.

Of states that become writable at the same moment only the newest is kept (a handful in
all), so a tap that sends a STATE after every record costs no memory. A state is written
exactly as the tap sent it (its bytes, see `state_text`); empty states (`null`, `{}`) are
never written.
"""

from __future__ import annotations

import logging
from typing import BinaryIO

from target_bigquery_lite.state_text import is_empty

log = logging.getLogger("target_bigquery_lite")


class StateTracker:
    """Holds received states until the watermark passes them; writes them in order."""

    def __init__(self, out: BinaryIO) -> None:
        """Write state lines to `out` (stdout's binary buffer), flushing each one."""
        self._out = out
        self._pending: list[tuple[int, bytes]] = []
        self._committed = 0
        self._submitted = 0
        self._hold: int | None = None
        self._latest: bytes | None = None
        self._stopped = False
        self.emitted = 0

    def received(self, line: bytes, tag: int) -> None:
        """A STATE (its value's exact text) arrived after `tag` records; write it if it may go."""
        if is_empty(line):
            log.warning("ignoring an empty STATE message (an empty state is never passed on)")
            return
        self._latest = line
        if tag <= self._watermark():
            self._pending.clear()
            self._write(line)
            return
        if self._pending and self._bucket(self._pending[-1][0]) == self._bucket(tag):
            self._pending[-1] = (tag, line)  # same commit frees both: keep the newer
        else:
            self._pending.append((tag, line))

    @property
    def watermark(self) -> int:
        """Every record up to this sequence number is in its final table."""
        return self._watermark()

    @property
    def latest(self) -> bytes | None:
        """The newest state received (written or not)."""
        return self._latest

    def submitted(self, end_seq: int) -> None:
        """A flush covering records up to `end_seq` went to the committer."""
        self._submitted = end_seq

    def hold(self, seq: int) -> None:
        """Record `seq` commits only at the end of the run: keep the watermark below it."""
        if self._hold is None or seq < self._hold:
            self._hold = seq

    def committed(self, end_seq: int) -> None:
        """Every record up to `end_seq` is committed (or held): write what that allows."""
        self._committed = max(self._committed, end_seq)
        watermark = self._watermark()
        ready = [line for tag, line in self._pending if tag <= watermark]
        if ready:
            self._pending = [(tag, line) for tag, line in self._pending if tag > watermark]
            self._write(ready[-1])

    def finish(self, end_seq: int) -> None:
        """Clean end of input, all committed and finalized: write the latest state again."""
        self._hold = None
        self._committed = max(self._committed, end_seq)
        self._pending.clear()
        if self._latest is not None:
            self._write(self._latest)

    def stop(self) -> None:
        """After a failure or a signal: never write another state."""
        self._stopped = True
        self._pending.clear()

    def _bucket(self, tag: int) -> tuple[bool, bool]:
        """States in one bucket become writable at the same moment.

        With at most one flush in flight, that is: covered by the flush in flight or not yet
        flushed, and before or after the first held (overwrite) record.
        """
        return tag > self._submitted, self._hold is not None and tag >= self._hold

    def _watermark(self) -> int:
        if self._hold is None:
            return self._committed
        return min(self._committed, self._hold - 1)

    def _write(self, line: bytes) -> None:
        if self._stopped:
            return
        self._out.write(line + b"\n")
        self._out.flush()
        self.emitted += 1
