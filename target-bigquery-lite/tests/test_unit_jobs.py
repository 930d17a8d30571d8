"""Pure tests: retry classification, deterministic job ids, 409 reattach, upload chunk size."""

from __future__ import annotations

from typing import Any

import google.cloud.bigquery.client as bigquery_client_module
import pytest
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions

from target_bigquery_lite.errors import BigQueryError, describe, is_transient
from target_bigquery_lite.jobs import JobRunner, object_label, step_name
from target_bigquery_lite.load import UPLOAD_CHUNK_SIZE, set_upload_chunk_size


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (requests.ConnectionError("refused"), True),
        (api_exceptions.ServiceUnavailable("busy"), True),
        (api_exceptions.TooManyRequests("slow down"), True),
        (api_exceptions.Forbidden("quota", errors=[{"reason": "rateLimitExceeded"}]), True),
        (api_exceptions.BadRequest("x", errors=[{"reason": "backendError"}]), True),
        (
            api_exceptions.BadRequest(
                "Could not serialize access to table t due to concurrent update"
            ),
            True,
        ),
        (
            api_exceptions.BadRequest("Failed to commit: Failed to commit DuckLake transaction."),
            True,
        ),
        (api_exceptions.BadRequest("bad", errors=[{"reason": "invalid"}]), False),
        (api_exceptions.Forbidden("denied", errors=[{"reason": "accessDenied"}]), False),
        (api_exceptions.NotFound("no table"), False),
        (ValueError("bug"), False),
    ],
)
def test_transient_classification(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_token_failures_say_they_are_about_credentials() -> None:
    refused = auth_exceptions.TransportError("HTTPConnectionPool(host='127.0.0.1', port=9): /token")
    assert is_transient(refused)
    assert describe(refused) == (
        "could not get an access token for the configured credentials (TransportError: "
        "HTTPConnectionPool(host='127.0.0.1', port=9): /token)"
    )
    assert describe(auth_exceptions.RefreshError("invalid_grant")).startswith(
        "could not get an access token"
    )


class FakeJob:
    def __init__(
        self, job_id: str, error: Exception | None = None, destination: str = "flows"
    ) -> None:
        self.job_id = job_id
        self.destination = destination
        self.error = error
        self.state = "DONE"
        self.error_result = {"reason": "backendError"} if error else None

    def result(self, retry: Any = None, timeout: float | None = None) -> None:
        if self.error:
            raise self.error


class FakeClient:
    def __init__(self) -> None:
        self.jobs: dict[str, FakeJob] = {}

    def get_job(self, job_id: str, **_: Any) -> FakeJob:
        if job_id not in self.jobs:
            raise api_exceptions.NotFound(f"Not found: Job {job_id}")
        return self.jobs[job_id]


def ours(job: Any) -> bool:
    return job.destination == "flows"


def runner(client: FakeClient, retries: int = 3) -> JobRunner:
    return JobRunner(client, "run1", retries, sleep=lambda _: None)  # type: ignore[arg-type]


def test_ambiguous_create_reattaches_to_the_same_job() -> None:
    client = FakeClient()
    started: list[str] = []

    def start(job_id: str) -> FakeJob:
        started.append(job_id)
        if len(started) == 1:  # BigQuery got the job, but the answer was lost
            client.jobs[job_id] = FakeJob(job_id)
            raise requests.Timeout("read timed out")
        raise api_exceptions.Conflict("Already Exists: Job")

    job = runner(client).run("000001_flows_merge", start, ours)
    assert started == ["bqlite_run1_000001_flows_merge_0"] * 2
    assert job.job_id == "bqlite_run1_000001_flows_merge_0"


def test_a_409_for_another_steps_job_is_an_error_not_a_success() -> None:
    client = FakeClient()
    client.jobs["bqlite_run1_load_0"] = FakeJob("bqlite_run1_load_0", destination="other")

    def start(job_id: str) -> FakeJob:
        raise api_exceptions.Conflict("Already Exists: Job")

    with pytest.raises(BigQueryError, match="already exists but is not this step's"):
        runner(client).run("load", start, ours)


def test_a_404_right_after_a_409_is_retried() -> None:
    client = FakeClient()
    lookups = []

    def get_job(job_id: str, **_: Any) -> FakeJob:
        lookups.append(job_id)
        if len(lookups) < 3:  # BigQuery: the job may not be visible yet
            raise api_exceptions.NotFound(f"Not found: Job {job_id}")
        return FakeJob(job_id)

    client.get_job = get_job  # type: ignore[method-assign]

    def start(job_id: str) -> FakeJob:
        raise api_exceptions.Conflict("Already Exists: Job")

    assert runner(client).run("load", start, ours).job_id == "bqlite_run1_load_0"
    assert len(lookups) == 3


@pytest.mark.parametrize("length", [150, 199, 200, 201, 500, 1000, 1024])
def test_step_names_of_tables_sharing_a_long_prefix_differ(length: int) -> None:
    shared = "t" * length
    names = {step_name(7, f"{shared}{tail}", "merge") for tail in ("", "a", "b", "ы", "é")}
    assert len(names) == 5
    for name in names:
        assert len(f"bqlite_20261201000000_abcdef12_{name}_99") <= 1024
        assert all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in name)
    assert object_label("заказы") != object_label("товары")


def test_a_job_that_failed_is_retried_under_a_new_id() -> None:
    client = FakeClient()
    started: list[str] = []

    def start(job_id: str) -> FakeJob:
        started.append(job_id)
        error = api_exceptions.InternalServerError("backend") if len(started) == 1 else None
        return FakeJob(job_id, error)

    runner(client).run("load", start, ours)
    assert started == ["bqlite_run1_load_0", "bqlite_run1_load_1"]


def test_terminal_errors_fail_at_once_with_the_job_id() -> None:
    started: list[str] = []
    error = api_exceptions.BadRequest(
        "Error while reading data", errors=[{"reason": "invalid", "message": "bad row 7"}]
    )

    def start(job_id: str) -> FakeJob:
        started.append(job_id)
        return FakeJob(job_id, error)

    with pytest.raises(BigQueryError) as info:
        runner(FakeClient()).run("load", start, ours)
    assert started == ["bqlite_run1_load_0"]
    assert "job bqlite_run1_load_0 failed: 400 Error while reading data" in str(info.value)
    assert "first errors: invalid: bad row 7" in str(info.value)


def test_transient_errors_give_up_after_max_retries() -> None:
    calls = []

    def call() -> None:
        calls.append(1)
        raise requests.ConnectionError("refused")

    with pytest.raises(BigQueryError, match="create table t failed after 3 tries"):
        runner(FakeClient(), retries=2).call("create table t", call)
    assert len(calls) == 3


def test_upload_chunk_size_is_set_on_the_client_module() -> None:
    set_upload_chunk_size()
    assert bigquery_client_module._DEFAULT_CHUNKSIZE == UPLOAD_CHUNK_SIZE == 8 * 1024 * 1024
    assert UPLOAD_CHUNK_SIZE % (256 * 1024) == 0
