"""The BigQuery side of a run: connect, prepare each stream's tables, commit, finalize.

Two clients: one for the main thread (tables for new or changed SCHEMAs, end-of-run work)
and one owned by the committer thread, so the two never share an HTTP session. The main
thread only changes a table the committer might be loading after waiting for it to be idle
(see `Runner._drain`). With `gcs_bucket` the committer also uploads each batch's files
before loading them, and deletes the objects after the batch is committed (`GcsStaging`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from google.cloud import bigquery

from target_bigquery_lite.committer import (
    Batch,
    Committer,
    StreamBatch,
    commit_stream_batch,
    overwrite_table_name,
)
from target_bigquery_lite.config import Settings
from target_bigquery_lite.connection import make_client
from target_bigquery_lite.gcs_archive import object_metadata
from target_bigquery_lite.identifiers import quote_table
from target_bigquery_lite.jobs import JobRunner
from target_bigquery_lite.load import set_upload_chunk_size
from target_bigquery_lite.merge import (
    VERSION_PARAMETER,
    build_delete_old_versions_sql,
    build_replace_sql,
)
from target_bigquery_lite.streams import Stream
from target_bigquery_lite.tables import Layout, Tables, table_layout

if TYPE_CHECKING:
    from target_bigquery_lite.gcs_staging import GcsStaging

log = logging.getLogger("target_bigquery_lite")


class Warehouse:
    """Connects on first use; owns the committer thread."""

    def __init__(
        self, settings: Settings, run_id: str, on_committed: Callable[[Batch], None]
    ) -> None:
        """`on_committed(batch)` runs in the committer thread after each batch commits."""
        self.settings = settings
        self.run_id = run_id
        self._on_committed = on_committed
        self._tables: Tables | None = None
        self._committer: Committer | None = None
        self._objects: GcsStaging | None = None
        if settings.gcs_bucket:  # imported only then: google-cloud-storage costs start-up time
            from target_bigquery_lite.gcs_staging import GcsStaging

            self._objects = GcsStaging(settings, run_id)

    @property
    def busy(self) -> bool:
        """Whether a batch is being committed."""
        return self._committer is not None and self._committer.busy

    def tables(self) -> Tables:
        """The main thread's table operations (connecting, and starting the committer, once)."""
        if self._tables is None:
            set_upload_chunk_size()
            tables = Tables(self._runner(), self.settings)
            tables.ensure_dataset()
            if self._objects is not None:
                self._objects.check_bucket()
            worker = Tables(self._runner(), self.settings)
            self._committer = Committer(lambda batch: self._commit(worker, batch))
            self._tables = tables
        return self._tables

    def submit(self, batch: Batch, before: Callable[[], None]) -> None:
        """Wait for the batch in flight, run `before`, then hand `batch` to the committer."""
        self.tables()
        assert self._committer is not None
        self._committer.wait()
        before()
        self._committer.submit(batch)

    def wait(self) -> None:
        """Block until nothing is in flight (raises the committer's failure)."""
        if self._committer is not None:
            self._committer.wait()

    def check(self) -> None:
        """Raise the committer's failure, if any, without waiting."""
        if self._committer is not None:
            self._committer.check()

    def prepare(self, stream: Stream) -> None:
        """Create or evolve the stream's table(s) and fix its load plan."""
        tables = self.tables()
        wanted = stream.all_wanted()
        layout = table_layout(wanted, self.settings, stream.message.stream)
        fields = tables.ensure_table(stream.table, wanted, layout)
        destination = stream.table
        if stream.method == "overwrite":
            destination = overwrite_table_name(self.run_id, stream.table)
            fields = tables.ensure_table(destination, wanted, Layout(), expires=True)
        stream.attach(fields, destination)

    def replace(self, stream: Stream) -> None:
        """Overwrite stream at the end of the run: swap in its rows in one transaction."""
        tables = self.tables()
        assert stream.plan is not None
        project, dataset = tables.project, tables.dataset
        sql = build_replace_sql(
            quote_table(project, dataset, stream.table),
            quote_table(project, dataset, stream.plan.destination),
            [field.name for field in stream.plan.load_fields],
        )
        tables.runner.query(f"final_{stream.table[:200]}_replace", sql)
        tables.drop(stream.plan.destination)
        log.info("stream '%s': table %s replaced", stream.message.stream, stream.table)

    def delete_old_versions(self, stream: Stream, version: int) -> None:
        """Full-table stream at the end of the run: remove rows of versions before `version`."""
        tables = self.tables()
        sql = build_delete_old_versions_sql(
            quote_table(tables.project, tables.dataset, stream.table)
        )
        job = tables.runner.query(
            f"final_{stream.table[:200]}_versions",
            sql,
            [bigquery.ScalarQueryParameter(VERSION_PARAMETER, "INT64", version)],
        )
        log.info(
            "stream '%s': version %d is active; %s rows of older versions deleted",
            stream.message.stream,
            version,
            job.num_dml_affected_rows,
        )

    def _runner(self) -> JobRunner:
        client = make_client(self.settings)
        return JobRunner(client, self.run_id, self.settings.max_retries)

    def pending_objects(self) -> list[str]:
        """Cloud Storage objects of batches not committed (what a failed run leaves)."""
        return self._objects.pending() if self._objects is not None else []

    def _commit(self, tables: Tables, batch: Batch) -> None:
        """Runs in the committer thread: upload (GCS staging), load and merge, then report."""
        uris = [self._upload(batch.number, item) for item in batch.streams]
        for item, item_uris in zip(batch.streams, uris, strict=True):
            commit_stream_batch(
                tables.runner, tables, self.run_id, batch.number, item, uris=item_uris
            )
        self._on_committed(batch)
        if self._objects is not None:
            self._objects.committed(batch.number)

    def _upload(self, batch: int, item: StreamBatch) -> list[str] | None:
        if self._objects is None:
            return None
        plan = item.plan
        metadata = object_metadata(plan.method, plan.keys, plan.load_fields, item.staged.rows)
        return self._objects.upload(batch, plan.table, item.staged.path, metadata)
