"""Load a staged NDJSON file into a table with one BigQuery load job (explicit schema).

Unknown fields are ignored (`ignore_unknown_values`): the SCHEMA decides the columns, as
with every Singer target, so a record carrying extra properties (or a merge stream's
sequence column when loading straight into a final table) does not fail the load.

The client uploads files in resumable chunks that it holds in memory; its 100 MB default
would be most of the target's memory budget, so chunks are 8 MiB (`set_upload_chunk_size`).
Each upload request has a timeout, so a stalled connection fails (and is retried) instead
of hanging.
"""

from __future__ import annotations

from pathlib import Path

import google.cloud.bigquery.client as bigquery_client_module
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from target_bigquery_lite.jobs import API_TIMEOUT_SECONDS, JobRunner

UPLOAD_CHUNK_SIZE = 8 * 1024 * 1024  # a multiple of 256 KiB, as resumable uploads require


def set_upload_chunk_size(size: int = UPLOAD_CHUNK_SIZE) -> None:
    """Make the client's resumable uploads send (and buffer) `size` bytes per request.

    google-cloud-bigquery reads this module constant on every upload and offers no
    parameter for it; a unit test fails loudly if a new client version drops it.
    """
    if not hasattr(bigquery_client_module, "_DEFAULT_CHUNKSIZE"):
        raise RuntimeError("google-cloud-bigquery no longer has _DEFAULT_CHUNKSIZE")
    bigquery_client_module._DEFAULT_CHUNKSIZE = size


def load_file(
    runner: JobRunner,
    name: str,
    path: Path,
    destination: bigquery.TableReference,
    fields: tuple[SchemaField, ...],
    *,
    truncate: bool,
) -> bigquery.LoadJob:
    """Load `path` into `destination` as the job for step `name`; wait until it is done.

    `truncate` replaces the table's rows (staging tables, so a retried load cannot double
    them); otherwise rows are appended, at most once thanks to the deterministic job id.
    """
    config = bigquery.LoadJobConfig(
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

    def start(job_id: str) -> bigquery.LoadJob:
        with path.open("rb") as source:
            return runner.client.load_table_from_file(
                source,
                destination,
                job_id=job_id,
                job_config=config,
                num_retries=0,
                timeout=API_TIMEOUT_SECONDS,
            )

    def is_ours(job: bigquery.LoadJob) -> bool:
        return getattr(job, "destination", None) == destination

    job = runner.run(name, start, is_ours)
    assert isinstance(job, bigquery.LoadJob)
    return job
