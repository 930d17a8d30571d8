"""Commit batches in one background thread, one at a time, while the next batch is staged.

A batch is every stream's staging file at one flush. The thread commits each stream's part
with the stream's load method (`TablePlan.method.commit`), in order. When a batch is done it
goes on the `done` queue and one byte is written to the wake-up pipe, so the runner (which
waits on its input and on that pipe) takes it from there: the committer never calls back
into the runner, and only the main thread writes states.

Queue depth one: `submit` first waits for the previous batch, so at most one batch is in
flight, disk use is bounded by two batches, and commits happen in input order, which is what
lets a single watermark (see `state.py`) decide which STATE may go out.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from target_bigquery_lite.load_methods import TablePlan
from target_bigquery_lite.stage import StagedFile


@dataclass(frozen=True)
class StreamBatch:
    """One stream's part of a batch."""

    plan: TablePlan
    staged: StagedFile


@dataclass(frozen=True)
class Batch:
    """Everything staged at one flush; `end_seq` is the last record sequence number in it."""

    number: int
    end_seq: int
    streams: tuple[StreamBatch, ...]


class Committer:
    """A daemon thread that runs `commit(batch)` for one batch at a time."""

    def __init__(self, commit: Callable[[Batch], None]) -> None:
        """Start the thread; `commit` raises to fail the run."""
        self._commit = commit
        self._lock = threading.Condition()
        self._queued: Batch | None = None
        self._busy = False
        self._error: BaseException | None = None
        self.done: queue.SimpleQueue[Batch] = queue.SimpleQueue()
        self.wake_fd, self._wake_write = os.pipe()
        os.set_blocking(self.wake_fd, False)
        self._thread = threading.Thread(target=self._run, name="committer", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether a batch is being committed."""
        return self._busy

    def submit(self, batch: Batch) -> None:
        """Hand over a batch; the previous one must be done (see `wait`)."""
        with self._lock:
            assert not self._busy, "submit() while a batch is in flight"
            self._queued = batch
            self._busy = True
            self._lock.notify_all()

    def wait(self) -> None:
        """Block until no batch is in flight; raise the failure of the last one, if any."""
        with self._lock:
            while self._busy:
                self._lock.wait()
        self.check()

    def check(self) -> None:
        """Raise the committer's failure, if it had one (cheap; called once per input chunk)."""
        if self._error is not None:
            raise self._error

    def committed(self) -> list[Batch]:
        """The batches committed since the last call, oldest first."""
        batches = []
        while True:
            try:
                batches.append(self.done.get_nowait())
            except queue.Empty:
                return batches

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._queued is None:
                    self._lock.wait()
                batch, self._queued = self._queued, None
            try:
                if self._error is None:
                    self._commit(batch)
                    self.done.put(batch)
            except BaseException as exc:  # handed to the main thread by check()
                self._error = exc
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()
                os.write(self._wake_write, b"x")
