"""Run BigQuery calls and jobs with one retry policy and deterministic job ids.

Each job id is `<run id>_<step name>_<attempt>`, fixed before the first try. If creating a
job fails ambiguously (a timeout: did BigQuery get it?), the retry sends the same id; a 409
Conflict then means the first request did arrive, and the runner waits on that job instead
of running the step twice. The attempt number only grows when a job definitively failed
with a transient error, because BigQuery never reuses a job id. The client's own retries
are switched off (`retry=None`), so retries are not stacked and `max_retries` means what it
says.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery

from target_bigquery_lite.errors import BigQueryError, describe, is_transient

T = TypeVar("T")
Job = bigquery.LoadJob | bigquery.QueryJob
MAX_BACKOFF_SECONDS = 60.0
API_TIMEOUT_SECONDS = 120.0

log = logging.getLogger("target_bigquery_lite")


class JobRunner:
    """Retries transient failures with exponential backoff; reattaches to jobs on 409."""

    def __init__(
        self,
        client: bigquery.Client,
        run_id: str,
        max_retries: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Use `client`; job ids start with `bqlite_<run_id>`."""
        self.client = client
        self.prefix = f"bqlite_{run_id}"
        self.max_retries = max_retries
        self._sleep = sleep

    def job_id(self, name: str, attempt: int) -> str:
        """The deterministic id of attempt `attempt` of step `name`."""
        return f"{self.prefix}_{name}_{attempt}"[:1024]

    def call(self, what: str, function: Callable[[], T]) -> T:
        """Run an API call (create table, ...) with retries for transient errors.

        Raises:
            BigQueryError: on a terminal error, or when retries are exhausted.
        """
        for failures in range(self.max_retries + 1):
            try:
                return function()
            except Exception as exc:
                self._give_up_or_wait(what, exc, failures)
        raise AssertionError("unreachable")  # pragma: no cover

    def run(self, name: str, start: Callable[[str], Job]) -> Job:
        """Create (or reattach to) the job for step `name` and wait until it succeeds.

        `start(job_id)` must create the job with exactly that id.

        Raises:
            BigQueryError: naming the job id and its first errors, when the job failed
                terminally or transient failures outlasted `max_retries`.
        """
        attempt = 0
        for failures in range(self.max_retries + 1):
            job_id = self.job_id(name, attempt)
            job: Job | None = None
            try:
                try:
                    job = start(job_id)
                except api_exceptions.Conflict:
                    log.info("job %s already exists (earlier try arrived): waiting on it", job_id)
                    job = self.client.get_job(job_id, retry=None, timeout=API_TIMEOUT_SECONDS)
                job.result(retry=None)
                return job
            except Exception as exc:
                if job is not None and job.state == "DONE" and job.error_result:
                    attempt += 1  # the job itself failed: a retry needs a new id
                self._give_up_or_wait(f"job {job_id}", exc, failures)
        raise AssertionError("unreachable")  # pragma: no cover

    def query(
        self, name: str, sql: str, parameters: Sequence[bigquery.ScalarQueryParameter] = ()
    ) -> bigquery.QueryJob:
        """Run one SQL script as the job for step `name` (values only as parameters)."""
        config = bigquery.QueryJobConfig(query_parameters=list(parameters))

        def start(job_id: str) -> bigquery.QueryJob:
            return self.client.query(
                sql,
                job_config=config,
                job_id=job_id,
                retry=None,
                job_retry=None,
                timeout=API_TIMEOUT_SECONDS,
            )

        job = self.run(name, start)
        assert isinstance(job, bigquery.QueryJob)
        return job

    def _give_up_or_wait(self, what: str, exc: Exception, failures: int) -> None:
        """Raise for a terminal error or the last failure; otherwise log and back off."""
        if not is_transient(exc):
            raise BigQueryError(f"{what} failed: {describe(exc)}") from exc
        if failures >= self.max_retries:
            raise BigQueryError(
                f"{what} failed after {failures + 1} tries: {describe(exc)}"
            ) from exc
        delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2**failures) * random.uniform(0.8, 1.2)  # noqa: S311
        log.warning(
            "%s: transient error (%s); retry %d in %.1f s", what, describe(exc), failures + 1, delay
        )
        self._sleep(delay)
