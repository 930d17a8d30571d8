"""The BigQuery side of a run: connect, prepare each stream's tables, commit, finalize.

Two clients: one for the main thread (tables for new or changed SCHEMAs, end-of-run work)
and one owned by the committer thread, so the two never share an HTTP session. The main
thread only changes a table the committer might be loading after waiting for it to be idle
(see `Runner._drain`). What each step does to a stream's tables is its load method's
business (`load_methods`); this module only decides which client runs it. With
`gcs_bucket` the committer also uploads each batch's files before loading them, and deletes
the objects once the batch is committed (`GcsStaging`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from target_bigquery_lite.committer import Batch, Committer, StreamBatch
from target_bigquery_lite.config import Settings
from target_bigquery_lite.connection import make_client
from target_bigquery_lite.cost import CostLedger
from target_bigquery_lite.gcs_archive import object_metadata
from target_bigquery_lite.jobs import JobRunner
from target_bigquery_lite.load import set_upload_chunk_size
from target_bigquery_lite.load_methods import LoadMethod, TablePlan, TableRequest
from target_bigquery_lite.tables import Tables
from target_bigquery_lite.versions import delete_old_versions

if TYPE_CHECKING:
    from target_bigquery_lite.gcs_staging import GcsStaging

log = logging.getLogger("target_bigquery_lite")


class Warehouse:
    """Connects on first use; owns the committer thread."""

    def __init__(self, settings: Settings, run_id: str) -> None:
        """Nothing is contacted before the first `prepare`."""
        self.settings = settings
        self.run_id = run_id
        self._tables: Tables | None = None
        self._committer: Committer | None = None
        self._objects: GcsStaging | None = None
        self.costs = CostLedger(emulated=settings.api_endpoint is not None)
        if settings.gcs_bucket:  # imported only then: google-cloud-storage costs start-up time
            from target_bigquery_lite.gcs_staging import GcsStaging

            self._objects = GcsStaging(settings, run_id)

    @property
    def committer(self) -> Committer | None:
        """The committer thread, once connected."""
        return self._committer

    @property
    def busy(self) -> bool:
        """Whether a batch is being committed."""
        return self._committer is not None and self._committer.busy

    def tables(self) -> Tables:
        """The main thread's table operations (connecting, and starting the committer, once).

        The dataset is looked up first; jobs then run in its location, so that polling them
        works for datasets outside the US even when `location` is not set.
        """
        if self._tables is None:
            set_upload_chunk_size()
            location = Tables(self._runner(None), self.settings).ensure_dataset()
            if self._objects is not None:
                self._objects.check_bucket()
            tables = Tables(self._runner(location), self.settings)
            worker = Tables(self._runner(location), self.settings)
            self._committer = Committer(lambda batch: self._commit(worker, batch))
            self._tables = tables
        return self._tables

    def prepare(self, method: LoadMethod, request: TableRequest) -> TablePlan:
        """Create or evolve the stream's table(s) with its method; the plan for its batches."""
        return method.prepare(self.tables(), request)

    def submit(self, batch: Batch) -> None:
        """Hand `batch` to the committer (after `wait`: one batch in flight at a time)."""
        self.tables()
        assert self._committer is not None
        self._committer.submit(batch)

    def wait(self) -> None:
        """Block until nothing is in flight (raises the committer's failure)."""
        if self._committer is not None:
            self._committer.wait()

    def check(self) -> None:
        """Raise the committer's failure, if any, without waiting."""
        if self._committer is not None:
            self._committer.check()

    def committed(self) -> list[Batch]:
        """Batches committed since the last call (see `Committer.committed`)."""
        return self._committer.committed() if self._committer is not None else []

    def finish(self, plan: TablePlan) -> None:
        """The stream's end-of-run work (its method's), on the main thread, nothing in flight."""
        plan.method.finish(self.tables(), plan)

    def delete_old_versions(
        self, plan: TablePlan, version: int, run_id: str, *, keep_unmarked: bool
    ) -> None:
        """Full-table stream at the end of the run: remove rows of versions before `version`."""
        delete_old_versions(
            self.tables(), plan.stream, plan.table, version, run_id, keep_unmarked=keep_unmarked
        )

    def pending_objects(self) -> list[str]:
        """Cloud Storage objects of batches not committed (what a failed run leaves)."""
        return self._objects.pending() if self._objects is not None else []

    def _runner(self, location: str | None) -> JobRunner:
        client = make_client(self.settings, location)
        return JobRunner(client, self.run_id, self.settings.max_retries, costs=self.costs)

    def _commit(self, tables: Tables, batch: Batch) -> None:
        """Runs in the committer thread: upload (Cloud Storage staging), commit, clean up."""
        items = [self._upload(batch.number, item) for item in batch.streams]
        for item in items:
            item.plan.method.commit(tables, item.plan, item.staged, batch.number)
        if self._objects is not None:
            self._objects.committed(batch.number)

    def _upload(self, batch: int, item: StreamBatch) -> StreamBatch:
        """The batch part, loading from its Cloud Storage object once uploaded there."""
        if self._objects is None:
            return item
        plan, staged = item.plan, item.staged
        metadata = object_metadata(plan.method.name, plan.keys, plan.load_fields, staged.rows)
        uris = self._objects.upload(batch, plan.table, staged.path, metadata)
        return dataclasses.replace(item, staged=dataclasses.replace(staged, uris=tuple(uris)))
