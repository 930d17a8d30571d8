"""Load a batch's staged rows into a table with one BigQuery load job (explicit schema).

The rows are a staging file on disk, uploaded with the job, or, with Cloud Storage staging,
the objects that file was uploaded to (`StagedFile.uris`), which BigQuery reads itself.

Unknown fields are ignored (`ignore_unknown_values`): the SCHEMA decides the columns, as
with every Singer target, so a record carrying extra properties (or a merge stream's
sequence column when loading straight into a final table) does not fail the load.

The client uploads files in resumable chunks that it holds in memory; its 100 MB default
would be most of the target's memory budget, so chunks are 8 MiB (`set_upload_chunk_size`).
Each upload request has a timeout, so a stalled connection fails (and is retried) instead
of hanging.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import google.cloud.bigquery.client as bigquery_client_module
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from target_bigquery_lite.jobs import API_TIMEOUT_SECONDS, JobRunner
from target_bigquery_lite.stage import StagedFile

UPLOAD_CHUNK_SIZE = 8 * 1024 * 1024  # a multiple of 256 KiB, as resumable uploads require


def set_upload_chunk_size(size: int = UPLOAD_CHUNK_SIZE) -> None:
    """Make the client's resumable uploads send (and buffer) `size` bytes per request.

    google-cloud-bigquery reads this module constant on every upload and offers no
    parameter for it; a unit test fails loudly if a new client version drops it.
    """
    if not hasattr(bigquery_client_module, "_DEFAULT_CHUNKSIZE"):
        raise RuntimeError("google-cloud-bigquery no longer has _DEFAULT_CHUNKSIZE")
    bigquery_client_module._DEFAULT_CHUNKSIZE = size


def load_staged(
    runner: JobRunner,
    name: str,
    staged: StagedFile,
    destination: bigquery.TableReference,
    fields: tuple[SchemaField, ...],
    *,
    truncate: bool,
) -> bigquery.LoadJob:
    """Load a batch's staged rows into `destination` as the job for step `name`; wait for it.

    `truncate` replaces the table's rows (staging tables, so a retried load cannot double
    them); otherwise rows are appended, at most once thanks to the deterministic job id.
    """
    if staged.uris:
        return load_uris(runner, name, staged.uris, destination, fields, truncate=truncate)
    config = _job_config(fields, truncate=truncate)

    def start(job_id: str) -> bigquery.LoadJob:
        with staged.path.open("rb") as source:
            return runner.client.load_table_from_file(
                source,
                destination,
                job_id=job_id,
                job_config=config,
                num_retries=0,
                timeout=API_TIMEOUT_SECONDS,
            )

    return _run(runner, name, start, destination)


def load_uris(
    runner: JobRunner,
    name: str,
    uris: Sequence[str],
    destination: bigquery.TableReference,
    fields: tuple[SchemaField, ...],
    *,
    truncate: bool,
) -> bigquery.LoadJob:
    """Load the Cloud Storage objects `uris` into `destination`; BigQuery reads them itself."""
    config = _job_config(fields, truncate=truncate)

    def start(job_id: str) -> bigquery.LoadJob:
        return runner.client.load_table_from_uri(
            list(uris),
            destination,
            job_id=job_id,
            job_config=config,
            retry=None,
            timeout=API_TIMEOUT_SECONDS,
        )

    return _run(runner, name, start, destination)


def _run(
    runner: JobRunner,
    name: str,
    start: Callable[[str], bigquery.LoadJob],
    destination: bigquery.TableReference,
) -> bigquery.LoadJob:
    """Run the load job; a job found under its id counts only if it loads `destination`."""

    def is_ours(job: bigquery.LoadJob) -> bool:
        return getattr(job, "destination", None) == destination

    job = runner.run(name, start, is_ours)
    assert isinstance(job, bigquery.LoadJob)
    return job


def _job_config(fields: tuple[SchemaField, ...], *, truncate: bool) -> bigquery.LoadJobConfig:
    return bigquery.LoadJobConfig(
        schema=list(fields),
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=(
            bigquery.WriteDisposition.WRITE_TRUNCATE
            if truncate
            else bigquery.WriteDisposition.WRITE_APPEND
        ),
        create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
        ignore_unknown_values=True,
    )
