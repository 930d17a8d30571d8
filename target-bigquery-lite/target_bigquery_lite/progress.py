"""Progress on stderr: rows received and committed per stream, with rates, and a final summary.

The runner calls `maybe_report` once per input chunk; it reads the clock there, not per
record, and writes at most one line per stream every `interval` seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from target_bigquery_lite.identifiers import shown
from target_bigquery_lite.jobs import object_label

if TYPE_CHECKING:
    from target_bigquery_lite.cost import CostLedger

PROGRESS_INTERVAL_SECONDS = 10.0

log = logging.getLogger("target_bigquery_lite")


@dataclass
class StreamCounts:
    """Counters of one stream; `committed` is advanced by the committer thread."""

    table: str
    method: str
    received: int = 0
    committed: int = 0
    batches: int = 0


class Progress:
    """Periodic and final reports of what each stream has received and committed."""

    def __init__(self, interval: float = PROGRESS_INTERVAL_SECONDS) -> None:
        """Report at most every `interval` seconds."""
        self.interval = interval
        self.started = time.monotonic()
        self.streams: dict[str, StreamCounts] = {}
        self._last_time = self.started
        self._last_received: dict[str, int] = {}
        self.next_report = self.started + interval

    def track(self, stream: str, table: str, method: str) -> StreamCounts:
        """The counters of `stream` (created on its first SCHEMA, kept across schema changes)."""
        counts = self.streams.get(stream)
        if counts is None:
            counts = self.streams[stream] = StreamCounts(table, method)
        counts.table, counts.method = table, method
        return counts

    def maybe_report(self, now: float) -> None:
        """Log one line per active stream if the interval has passed."""
        if now < self.next_report:
            return
        elapsed = max(now - self._last_time, 1e-9)
        for name, counts in self.streams.items():
            previous = self._last_received.get(name, 0)
            if counts.received == previous and counts.committed == counts.received:
                continue
            log.info(
                "progress %s: received %d (%.0f rows/s), committed %d",
                shown(name),
                counts.received,
                (counts.received - previous) / elapsed,
                counts.committed,
            )
            self._last_received[name] = counts.received
        self._last_time = now
        self.next_report = now + self.interval

    def summary(self, succeeded: bool, costs: CostLedger | None = None) -> None:
        """Log the totals of the run, per stream and overall (with its jobs' costs)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        total = sum(counts.received for counts in self.streams.values())
        for name, counts in self.streams.items():
            log.info(
                "summary %s -> %s (%s): received %d, committed %d in %d batch(es)",
                shown(name),
                shown(counts.table),
                counts.method,
                counts.received,
                counts.committed,
                counts.batches,
            )
            cost = costs.summary(object_label(counts.table)) if costs is not None else None
            if cost is not None:
                log.info("cost %s: %s", shown(name), cost)
        log.info(
            "%s: %d records in %.1f s (%.0f records/s)",
            "done" if succeeded else "failed",
            total,
            elapsed,
            total / elapsed,
        )
