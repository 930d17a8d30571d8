"""Commit batches in one background thread, one at a time, while the next batch is staged.

A batch is every stream's staging file at one flush. The thread commits them in order:

* `merge`: load into an expiring per-batch staging table, MERGE into the final table on the
  key properties (latest arrival wins), drop the staging table;
* `append`: load straight into the final table (a load job is atomic);
* `overwrite`: load into the run's staging table; it replaces the final table at the end.

Loads read the staging file itself, or, with Cloud Storage staging, the objects it was
uploaded to (`uris`, see `gcs_staging.py`).

Queue depth one: `submit` first waits for the previous batch, so at most one batch is in
flight, disk use is bounded by two batches, and commits happen in input order, which is what
lets a single watermark (see `state.py`) decide which STATE may go out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from target_bigquery_lite.errors import TargetError
from target_bigquery_lite.identifiers import quote_table
from target_bigquery_lite.jobs import JobRunner
from target_bigquery_lite.load import load_file, load_uris
from target_bigquery_lite.merge import SEQUENCE_COLUMN, build_merge_sql
from target_bigquery_lite.stage import StagedFile
from target_bigquery_lite.streams import TablePlan
from target_bigquery_lite.tables import Tables

log = logging.getLogger("target_bigquery_lite")


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


def staging_table_name(run_id: str, batch: int, table: str) -> str:
    """The per-batch staging table of a merge stream (deterministic, so retries reuse it)."""
    return f"_bqlite_stage_{run_id}_{batch:06d}_{table}"[:1024]


def overwrite_table_name(run_id: str, table: str) -> str:
    """The run's staging table of an overwrite stream."""
    return f"_bqlite_overwrite_{run_id}_{table}"[:1024]


def commit_stream_batch(
    runner: JobRunner,
    tables: Tables,
    run_id: str,
    batch: int,
    item: StreamBatch,
    *,
    uris: Sequence[str] | None = None,
) -> None:
    """Load one stream's staged rows (the file, or its objects `uris`); for merge, MERGE them."""
    plan = item.plan
    step = f"{batch:06d}_{plan.table[:200]}"
    started = time.monotonic()

    def load(table: str, *, truncate: bool) -> None:
        table_id = tables.table_id(table)
        if uris is None:
            path = item.staged.path
            load_file(runner, f"{step}_load", path, table_id, plan.load_fields, truncate=truncate)
        else:
            load_uris(runner, f"{step}_load", uris, table_id, plan.load_fields, truncate=truncate)

    if plan.method in ("append", "overwrite"):
        load(plan.destination, truncate=False)
        if plan.method == "overwrite":
            tables.extend_expiry(plan.destination)
        return
    staging = staging_table_name(run_id, batch, plan.table)
    tables.create_staging(staging, plan.load_fields)
    load(staging, truncate=True)
    loaded = time.monotonic()
    columns = [field.name for field in plan.load_fields if field.name != SEQUENCE_COLUMN]
    sql = build_merge_sql(
        quote_table(tables.project, tables.dataset, plan.table),
        quote_table(tables.project, tables.dataset, staging),
        plan.keys,
        columns,
    )
    runner.query(f"{step}_merge", sql)
    merged = time.monotonic()
    try:
        tables.drop(staging)
    except TargetError as exc:  # committed already; the expiration removes it later
        log.warning("could not drop staging table %s (it expires by itself): %s", staging, exc)
    log.info(
        "batch %d %s: %d rows loaded in %.2f s, merged in %.2f s, staging dropped in %.2f s",
        batch,
        plan.table,
        item.staged.rows,
        loaded - started,
        merged - loaded,
        time.monotonic() - merged,
    )


class Committer:
    """A daemon thread that runs `commit(batch)` for one batch at a time."""

    def __init__(self, commit: Callable[[Batch], None]) -> None:
        """Start the thread; `commit` raises to fail the run."""
        self._commit = commit
        self._lock = threading.Condition()
        self._queued: Batch | None = None
        self._busy = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="committer", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether a batch is being committed."""
        return self._busy

    def submit(self, batch: Batch) -> None:
        """Hand over a batch after the previous one is committed (raises its failure)."""
        self.wait()
        with self._lock:
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

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._queued is None:
                    self._lock.wait()
                batch, self._queued = self._queued, None
            try:
                if self._error is None:
                    self._commit(batch)
            except BaseException as exc:  # handed to the main thread by check()
                self._error = exc
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()
