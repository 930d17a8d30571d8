"""A small client of Dagster's GraphQL API (what the UI reads and writes).

The backfill launcher and the tests drive Dagster only through it, so they work the same
against `make orchestrate`, a `dagster dev` they started, or a remote deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

LOCATION = "flows"
REPOSITORY = "__repository__"
REPOSITORY_SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
TERMINAL = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


class DagsterApiError(RuntimeError):
    """Dagster answered with an error (or not at all)."""


@dataclass(frozen=True)
class PartitionRun:
    """The latest run of one partition: its key, run id and status (None: never run)."""

    key: str
    run_id: str | None
    status: str | None


class DagsterClient:
    """Queries and mutations on one Dagster webserver's /graphql."""

    def __init__(self, url: str, timeout: float = 60) -> None:
        """Talk to the webserver at `url` (e.g. http://127.0.0.1:3000)."""
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def query(self, text: str, **variables: Any) -> dict[str, Any]:
        """Run one GraphQL document; its `data`, or DagsterApiError with the errors."""
        response = self.session.post(
            f"{self.url}/graphql",
            json={"query": text, "variables": variables},
            timeout=self.timeout,
        )
        if response.status_code != 200:
            raise DagsterApiError(
                f"{self.url}/graphql: HTTP {response.status_code}: {response.text[:300]}"
            )
        body = response.json()
        if body.get("errors"):
            raise DagsterApiError("; ".join(error["message"] for error in body["errors"]))
        return body["data"]

    def location_loaded(self) -> bool:
        """Whether the code location has loaded (raises its error if it failed to)."""
        data = self.query(
            """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )
        for entry in data["workspaceOrError"].get("locationEntries", []):
            if entry["name"] != LOCATION:
                continue
            failure = entry["locationOrLoadError"] or {}
            if failure.get("__typename") == "PythonError":
                raise DagsterApiError(
                    f"code location {LOCATION} failed to load: {failure['message']}"
                )
            loaded = failure.get("__typename") == "RepositoryLocation"
            return entry["loadStatus"] == "LOADED" and loaded
        return False

    def partition_runs(self, job: str) -> list[PartitionRun]:
        """Every partition of a partitioned job with its latest run (the UI's partitions page)."""
        data = self.query(
            """query($repo: RepositorySelector!, $name: String!) {
                 partitionSetOrError(repositorySelector: $repo, partitionSetName: $name) {
                   __typename ... on PartitionSet { partitionStatusesOrError {
                     __typename ... on PartitionStatuses {
                       results { partitionName runId runStatus } }
                     ... on PythonError { message } } }
                   ... on PythonError { message }
                   ... on PartitionSetNotFoundError { message } } }""",
            repo=REPOSITORY_SELECTOR,
            name=f"{job}_partition_set",
        )
        found = data["partitionSetOrError"]
        statuses = found.get("partitionStatusesOrError") or found
        if "results" not in statuses:
            raise DagsterApiError(f"partitions of {job}: {statuses.get('message', statuses)}")
        return [
            PartitionRun(item["partitionName"], item["runId"], item["runStatus"])
            for item in statuses["results"]
        ]

    def set_pool_limit(self, pool: str, limit: int) -> None:
        """Set a concurrency pool's limit (runs holding it at once)."""
        data = self.query(
            """mutation($key: String!, $limit: Int!) {
                 setConcurrencyLimit(concurrencyKey: $key, limit: $limit) }""",
            key=pool,
            limit=limit,
        )
        if data["setConcurrencyLimit"] is not True:
            raise DagsterApiError(f"setting the {pool} pool limit failed")

    def launch_backfill(self, job: str, keys: list[str], tags: dict[str, str]) -> str:
        """Launch one backfill of `keys`; its id."""
        data = self.query(
            """mutation($params: LaunchBackfillParams!) {
               launchPartitionBackfill(backfillParams: $params) {
                 __typename ... on LaunchBackfillSuccess { backfillId }
                 ... on PythonError { message } ... on PartitionSetNotFoundError { message }
                 ... on InvalidStepError { invalidStepKey } ... on InvalidOutputError { stepKey }
                 ... on UnauthorizedError { message } } }""",
            params={
                "selector": {
                    "partitionSetName": f"{job}_partition_set",
                    "repositorySelector": REPOSITORY_SELECTOR,
                },
                "partitionNames": keys,
                "fromFailure": False,
                "tags": [{"key": key, "value": value} for key, value in tags.items()],
            },
        )
        result = data["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise DagsterApiError(f"launching the backfill of {job}: {result}")
        return result["backfillId"]

    def backfill_runs(self, backfill_id: str) -> list[dict[str, Any]]:
        """The runs a backfill has launched so far (retries included), oldest first."""
        data = self.query(
            """query($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) {
                 __typename ... on Runs { results { runId status startTime endTime
                   tags { key value } } } ... on PythonError { message } } }""",
            tags=[{"key": "dagster/backfill", "value": backfill_id}],
        )
        runs = data["runsOrError"]
        if runs["__typename"] != "Runs":
            raise DagsterApiError(f"runs of backfill {backfill_id}: {runs.get('message')}")
        return list(reversed(runs["results"]))

    def backfill_status(self, backfill_id: str) -> str:
        """The backfill's own status (REQUESTED while the daemon still launches its runs)."""
        data = self.query(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 __typename ... on PartitionBackfill { status }
                 ... on PythonError { message } } }""",
            id=backfill_id,
        )
        result = data["partitionBackfillOrError"]
        if "status" not in result:
            raise DagsterApiError(f"backfill {backfill_id}: {result}")
        return result["status"]

    def selector(self, job: str) -> dict[str, str]:
        """A job's selector in this code location."""
        return {**REPOSITORY_SELECTOR, "pipelineName": job}
