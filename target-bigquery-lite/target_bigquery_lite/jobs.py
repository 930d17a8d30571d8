"""Run BigQuery calls and jobs with one retry policy and deterministic job ids.

Each job id is `bqlite_<run id>_<step name>_<attempt>`, fixed before the first try; a step
name holds a digest of the full table name (`step_name`), so no two tables share a job id.
If creating a job fails ambiguously (a timeout: did BigQuery get it?), the retry sends the
same id; a 409 Conflict then means the first request did arrive, and the runner waits on
that job instead of running the step twice, once it has checked that the job is this
step's own (same destination or statement). The attempt number only grows when a job
definitively failed with a transient error, because BigQuery never reuses a job id. The
client's own retries are switched off (`retry=None`), so retries are not stacked and
`max_retries` means what it says; every request has a timeout, polling included.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery

from target_bigquery_lite.errors import BigQueryError, describe, is_transient

if TYPE_CHECKING:
    from target_bigquery_lite.cost import CostLedger

T = TypeVar("T")
Job = bigquery.LoadJob | bigquery.QueryJob
MAX_BACKOFF_SECONDS = 60.0
API_TIMEOUT_SECONDS = 120.0
POLL_TIMEOUT_SECONDS = 30.0
"""A job's status is a small answer: a poll that takes longer is a stalled connection."""
POLL_FIRST_SECONDS = 0.05
POLL_MAX_SECONDS = 2.0
REATTACH_TRIES = 5
_NOT_IN_JOB_IDS = re.compile(r"[^A-Za-z0-9_]")

log = logging.getLogger("target_bigquery_lite")


def object_label(table: str) -> str:
    """`<readable prefix>_<digest>` of a table name, for job ids and names the target makes.

    The digest is of the whole name, so two tables whose names share a long prefix (or
    differ only in characters a job id cannot hold) never share a job or a staging table.
    """
    digest = hashlib.sha256(table.encode()).hexdigest()[:16]
    readable = _NOT_IN_JOB_IDS.sub("", table)[:40]
    return f"{readable}_{digest}" if readable else digest


def step_name(batch: int | None, table: str, kind: str) -> str:
    """The name of one step for `table`: `<batch>_<label>_<kind>` (`final` for end-of-run)."""
    when = "final" if batch is None else f"{batch:06d}"
    return f"{when}_{object_label(table)}_{kind}"


class JobRunner:
    """Retries transient failures with exponential backoff; reattaches to jobs on 409."""

    def __init__(
        self,
        client: bigquery.Client,
        run_id: str,
        max_retries: int,
        sleep: Callable[[float], None] = time.sleep,
        costs: CostLedger | None = None,
    ) -> None:
        """Use `client`; job ids start with `bqlite_<run_id>`; finished jobs go in `costs`."""
        self.client = client
        self.prefix = f"bqlite_{run_id}"
        self.max_retries = max_retries
        self._sleep = sleep
        self.costs = costs

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

    def run(self, name: str, start: Callable[[str], Job], is_ours: Callable[[Job], bool]) -> Job:
        """Create (or reattach to) the job for step `name` and wait until it succeeds.

        `start(job_id)` must create the job with exactly that id. A 409 means a job with
        that id exists: it is waited on only if `is_ours(job)` confirms it is this step's
        (the same destination, the same statement); anything else is an error, never a
        silent success.

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
                    job = self._reattach(job_id, is_ours)
                self._wait(job)
                if self.costs is not None:
                    self.costs.record(name, job)
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

        job = self.run(name, start, lambda job: getattr(job, "query", None) == sql)
        assert isinstance(job, bigquery.QueryJob)
        return job

    def _wait(self, job: Job) -> None:
        """Poll until the job is done, each request bounded by `POLL_TIMEOUT_SECONDS`.

        The client's own `result(timeout=...)` would be a deadline for the whole job (a
        long MERGE is fine; a stalled connection is not), so polling is done here.
        """
        delay = POLL_FIRST_SECONDS
        while job.state != "DONE":
            self._sleep(delay)
            job.reload(retry=None, timeout=POLL_TIMEOUT_SECONDS)
            delay = min(delay * 1.5, POLL_MAX_SECONDS)
        job.result(retry=None, timeout=POLL_TIMEOUT_SECONDS)

    def _reattach(self, job_id: str, is_ours: Callable[[Job], bool]) -> Job:
        """The existing job `job_id`, after checking that it is this step's own.

        BigQuery documents that a job can be briefly not found right after the 409 that
        says it exists: such a 404 is retried a few times.
        """
        log.info("job %s already exists (an earlier try arrived): checking it", job_id)
        for tries in range(REATTACH_TRIES):
            try:
                job = self.client.get_job(job_id, retry=None, timeout=POLL_TIMEOUT_SECONDS)
                break
            except api_exceptions.NotFound:
                if tries + 1 == REATTACH_TRIES:
                    raise
                self._sleep(0.5 * 2**tries)
        if not is_ours(job):
            raise BigQueryError(
                f"job {job_id} already exists but is not this step's (another destination or "
                "statement); refusing to take its result for this step's"
            )
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
