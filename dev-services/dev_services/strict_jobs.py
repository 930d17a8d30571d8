"""The strict front's job rules: SQL through ZetaSQL, load data checks, locations, quotas.

* Queries (`jobs.insert`, `jobs.query`): analyzed by ZetaSQL against the tables as they
  are (`sql_checks`); a rejected statement gets BigQuery's 400 `invalidQuery` with
  ZetaSQL's message, and so does a query over a `requirePartitionFilter` table without a
  pruning filter. Nothing rejected reaches the emulator. A STRUCT converted by position
  into a STRUCT with the same field names in another order (BigQuery puts its values in
  the wrong fields; the emulator matches names) is recorded, and the statement runs.
* Load jobs from uploads: the data is checked as it passes (`load_checks`); a violation
  makes the job fail as BigQuery's would (DONE, `errorResult` with BigQuery's summary,
  the strict reasons in `errors[]`) and the data never reaches the emulator. Loads from
  `sourceUris` are not read (a stated gap until the harness has a Cloud Storage).
* A job runs where its datasets are; looking it up (`jobs.get`, `getQueryResults`,
  cancel) without that location finds it only in the US and EU multi-regions, otherwise
  404, as in BigQuery. Right after a 409 on `jobs.insert`, the first lookup of that job
  answers 404 once, as BigQuery's eventually consistent job store can.
* Every load, copy, DML statement and query with a destination counts against the
  table's daily 1,500 table operations; past it, 403 `quotaExceeded`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from dev_services.sql_catalog import TableRef
from dev_services.sql_checks import check_sql
from dev_services.strict_http import Request, Response, Upstream, error_response, json_response
from dev_services.strict_state import MULTI_REGIONS, VIOLATIONS, StrictState
from dev_services.zetasql_engine import engine

_QUOTA_MESSAGE = (
    "Quota exceeded: Your table exceeded quota for imports or query appends per table "
    "(strict mode: {table} had {count} table operations today)"
)


class JobRules:
    """Job requests, judged with the state shared by the front."""

    def __init__(
        self, state: StrictState, upstream: Upstream, front_url: Callable[[], str]
    ) -> None:
        """Judge with `state`; relay to `upstream`; `front_url()` is where clients reach us."""
        self.state = state
        self.upstream = upstream
        self.front_url = front_url

    # --- lookups ---------------------------------------------------------------------------
    def dataset_location(self, project: str, dataset: str) -> str | None:
        """Where a dataset is (None: it does not exist)."""
        with self.state.lock:
            known = self.state.dataset_locations.get((project, dataset))
        if known:
            return known
        resource = self.upstream.get_json(
            f"/bigquery/v2/projects/{project}/datasets/{quote(dataset)}"
        )
        if resource is None:
            return None
        with self.state.lock:
            return self.state.dataset_locations.setdefault(
                (project, dataset), resource.get("location") or "US"
            )

    def table(self, ref: TableRef) -> dict[str, Any] | None:
        """A table resource from the emulator, found only under its exact (case-sensitive) name."""
        resource = self.upstream.get_json(
            f"/bigquery/v2/projects/{ref.project}/datasets/{quote(ref.dataset)}/tables/{quote(ref.table)}"
        )
        reference = (resource or {}).get("tableReference") or {}
        if reference.get("tableId") != ref.table or reference.get("datasetId") != ref.dataset:
            return None
        return resource

    # --- jobs.insert and jobs.query ----------------------------------------------------------
    def insert(self, request: Request, project: str) -> Response:
        """`jobs.insert` (no upload): queries are analyzed, loads/copies counted."""
        body = request.json()
        config = body.get("configuration") or {}
        job_id = (body.get("jobReference") or {}).get("jobId")
        if job_id and (project, job_id) in self.state.failed_jobs:
            return error_response(409, "duplicate", f"Already Exists: Job {project}:{job_id}")
        if "query" in config:
            return self._run_query(
                request, project, config["query"], job_id=job_id, reference=body.get("jobReference")
            )
        destination = (config.get("load") or config.get("copy") or {}).get("destinationTable")
        datasets = [table_ref(destination, project)] if destination else []
        return self._submit(
            request,
            project,
            job_id=job_id,
            reference=body.get("jobReference"),
            datasets=datasets,
            written=datasets,
        )

    def query(self, request: Request, project: str) -> Response:
        """`jobs.query` (the client's fast path): analyzed like a query job."""
        body = request.json()
        reference = {"location": body["location"]} if body.get("location") else None
        return self._run_query(request, project, body, job_id=None, reference=reference)

    def _run_query(
        self,
        request: Request,
        project: str,
        query: dict[str, Any],
        *,
        job_id: str | None,
        reference: dict[str, Any] | None,
    ) -> Response:
        sql = query.get("query") or ""
        if query.get("useLegacySql"):
            return self._submit(
                request, project, job_id=job_id, reference=reference, datasets=[], written=[]
            )
        default = query.get("defaultDataset") or {}
        with self.state.lock:
            self.state.statements.add(sql)
        report = check_sql(
            engine(),
            sql,
            query.get("queryParameters") or [],
            project=project,
            default_dataset=default.get("datasetId"),
            fetch_table=self.table,
        )
        problems = [("sql", e) for e in report.errors] + [
            ("partition-filter", e) for e in report.partition_errors
        ]
        if problems:
            kind, message = problems[0]
            VIOLATIONS.record(kind, f"{message} (strict mode: ZetaSQL)", sql)
            return error_response(400, "invalidQuery", f"{message} (strict mode: ZetaSQL)",
                                  location="query", locationType="other")  # fmt: skip
        for problem in report.struct_order:
            VIOLATIONS.record("struct-order", f"{problem} (strict mode: ZetaSQL)", sql)
        written = list(report.written)
        if query.get("destinationTable"):
            written.append(table_ref(query["destinationTable"], project))
        datasets = report.tables + written
        if default.get("datasetId"):
            datasets.append(TableRef(default.get("projectId") or project, default["datasetId"], ""))
        return self._submit(
            request,
            project,
            job_id=job_id,
            reference=reference,
            datasets=datasets,
            written=written,
        )

    def _submit(
        self,
        request: Request,
        project: str,
        *,
        job_id: str | None,
        reference: dict[str, Any] | None,
        datasets: list[TableRef],
        written: list[TableRef],
    ) -> Response:
        location, refusal = self.location((reference or {}).get("location"), datasets)
        if refusal is not None:
            return refusal
        refusal = self.count(written, request)
        if refusal is not None:
            return refusal
        response = self.upstream.send(request)
        return self.created(response, project, job_id, location)

    def created(
        self, response: Response, project: str, job_id: str | None, location: str
    ) -> Response:
        """Remember where a created job runs and say so in the response (409: see module doc)."""
        if response.status == 409 and job_id:
            with self.state.lock:
                if self.state.not_found_after_conflict:
                    self.state.conflicted_jobs.add((project, job_id))
            return response
        body = response.json()
        if response.status != 200 or body is None:
            return response
        job_id = (body.get("jobReference") or {}).get("jobId") or job_id
        if job_id:
            with self.state.lock:
                self.state.job_locations[(project, job_id)] = location
        return response.with_json(_located(body, project, location))

    def location(
        self, requested: str | None, tables: list[TableRef]
    ) -> tuple[str, Response | None]:
        """The job's location: the one requested (it must match its datasets') or theirs."""
        found = []
        for ref in dict.fromkeys((ref.project, ref.dataset) for ref in tables):
            location = self.dataset_location(*ref)
            if location is not None:
                found.append((ref, location))
        if requested:
            for (project, dataset), location in found:
                if location.lower() != requested.lower():
                    message = (
                        f"Not found: Dataset {project}:{dataset} was not found in location "
                        f"{requested}"
                    )
                    return requested, error_response(404, "notFound", message)
            return requested, None
        return (found[0][1] if found else "US"), None

    def count(self, written: list[TableRef], request: Request) -> Response | None:
        """Count one operation per written table; the quota error once one is used up."""
        for ref in written:
            if not self.state.count_operation(ref.full_name):
                message = _QUOTA_MESSAGE.format(
                    table=ref.full_name, count=self.state.operations[ref.full_name]
                )
                VIOLATIONS.record("quota", message, request.describe())
                return error_response(403, "quotaExceeded", message)
        return None

    # --- jobs.get, getQueryResults, cancel -------------------------------------------------------
    def lookup(self, request: Request, project: str, job_id: str) -> Response:
        """A lookup of a job: found only with its location (outside US/EU), as in BigQuery."""
        key = (project, job_id)
        with self.state.lock:
            location = self.state.job_locations.get(key)
            conflicted = key in self.state.conflicted_jobs
            self.state.conflicted_jobs.discard(key)
            failed = self.state.failed_jobs.get(key)
        given = request.query.get("location")
        if location is not None and not _found_at(location, given):
            return error_response(404, "notFound", f"Not found: Job {project}:{job_id}")
        if conflicted:
            return error_response(404, "notFound", f"Not found: Job {project}:{job_id}")
        if failed is not None:
            if "/queries/" in request.path:
                return error_response(400, "invalid", failed["status"]["errorResult"]["message"])
            return json_response(200, failed)
        response = self.upstream.send(request, target=request.without_query("location"))
        body = response.json()
        if response.status == 200 and body is not None and location is not None:
            return response.with_json(_located(body, project, location))
        return response


def _found_at(location: str, given: str | None) -> bool:
    if given is None:
        return location.lower() in MULTI_REGIONS
    return given.lower() == location.lower()


def _located(body: dict[str, Any], project: str, location: str) -> dict[str, Any]:
    reference = body.get("jobReference")
    if isinstance(reference, dict):
        reference["location"] = location
        if "id" in body and reference.get("jobId"):
            body["id"] = f"{project}:{location}.{reference['jobId']}"
    return body


def table_ref(table: dict[str, Any], project: str) -> TableRef:
    """The `TableRef` of a REST `tableReference` (its project defaulting to `project`)."""
    return TableRef(
        table.get("projectId") or project, table.get("datasetId", ""), table.get("tableId", "")
    )
