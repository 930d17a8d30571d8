"""A strict BigQuery in front of the emulator: refuse what BigQuery would refuse.

local-bigquery accepts much that BigQuery does not. `StrictFront` is a threaded loopback
HTTP proxy (in the test process) that enforces BigQuery's documented rules before a
request reaches the emulator and rewrites what the emulator answers differently:

* permissions: requests carrying the harness's bearer token (`ADMIN_TOKEN`) may do
  anything; every other request (the target's anonymous credentials) acts as
  `state.principal`, by default BigQuery Data Editor on the dataset plus Job User on the
  project. `datasets.insert` needs `bigquery.datasets.create` whether or not the dataset
  exists (403 first, as in BigQuery); updating or deleting a dataset needs more still;
* etags: the front keeps one per table, renewed by every change of its metadata (insert,
  patch, update), shows it in every table resource, and answers `tables.patch`/`update`
  whose `If-Match` is stale with 412. Loads and DML do not renew it;
* locations: datasets are where their `datasets.insert` put them; tables and jobs say so;
* jobs (SQL, load data, job locations, quotas): see `strict_jobs`.

Violations are recorded in `strict_state.VIOLATIONS` for the pytest plugin. When the
emulator is down, the front drops the connection, as an unreachable BigQuery would.
"""

from __future__ import annotations

import re
import threading
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from dev_services.bigquery_emulator import DEFAULT_PROJECT
from dev_services.strict_http import Request, Response, Upstream, error_response
from dev_services.strict_jobs import JobRules
from dev_services.strict_state import ADMIN, ADMIN_TOKEN, STATES, VIOLATIONS, StrictState
from dev_services.strict_uploads import UploadRules
from dev_services.zetasql_engine import warm_up

_P = r"/bigquery/v2/projects/([^/]+)"
Route = tuple[str | None, re.Pattern[str], Callable[..., Response]]


class StrictFront:
    """The strict front: start it, hand out `url`, stop it; `state` outlives restarts."""

    def __init__(self, upstream: str, state: StrictState | None = None) -> None:
        """Front `upstream` (the emulator's http://127.0.0.1:PORT) with `state`."""
        parts = urlsplit(upstream)
        if parts.hostname not in {"127.0.0.1", "localhost"}:
            raise ValueError("StrictFront only forwards to loopback addresses")
        self.upstream = Upstream(parts.hostname, parts.port or 80)
        if state is None:
            state = StrictState(DEFAULT_PROJECT)
            STATES.append(state)
        self.state = state
        self.jobs = JobRules(self.state, self.upstream, lambda: self.url)
        self.uploads = UploadRules(self.jobs)
        self._server: ThreadingHTTPServer | None = None
        self.routes: list[Route] = [
            ("POST", re.compile(rf"{_P}/datasets"), self.datasets_insert),
            (None, re.compile(rf"{_P}/datasets/([^/]+)"), self.dataset),
            ("POST", re.compile(rf"{_P}/datasets/([^/]+)/tables"), self.tables_insert),
            (None, re.compile(rf"{_P}/datasets/([^/]+)/tables/([^/]+)"), self.table),
            ("POST", re.compile(rf"{_P}/jobs"), self.jobs.insert),
            ("POST", re.compile(rf"{_P}/queries"), self.jobs.query),
            ("GET", re.compile(rf"{_P}/(?:jobs|queries)/([^/]+)"), self.jobs.lookup),
            ("POST", re.compile(rf"{_P}/jobs/([^/]+)/cancel"), self.jobs.lookup),
            ("POST", re.compile(rf"/upload{_P}/jobs"), self.uploads.upload_start),
            ("PUT", re.compile(rf"/upload{_P}/jobs"), self.uploads.upload_chunk),
        ]

    @property
    def url(self) -> str:
        """Where clients reach the front (start it first)."""
        if self._server is None:
            raise RuntimeError("the strict front is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1:`port` (0: a free one); ZetaSQL starts loading meanwhile."""
        warm_up()
        server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        server.daemon_threads = True
        server.front = self  # type: ignore[attr-defined]
        self._server = server
        threading.Thread(target=server.serve_forever, name="strict-bigquery", daemon=True).start()
        return self.url

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def handle(self, request: Request) -> Response:
        """Apply the first matching route's rules (or relay the request unchanged)."""
        for method, pattern, rule in self.routes:
            match = pattern.fullmatch(request.path)
            if match and (method is None or method == request.method):
                return rule(request, *(unquote(group) for group in match.groups()))
        return self.upstream.send(request)

    # --- datasets ----------------------------------------------------------------------------
    def datasets_insert(self, request: Request, project: str) -> Response:
        """`datasets.insert`: the permission is checked before anything else."""
        refusal = self._permission(request, project, "bigquery.datasets.create")
        if refusal is not None:
            return refusal
        response = self.upstream.send(request)
        if response.status == 200:
            body = request.json()
            dataset = (body.get("datasetReference") or {}).get("datasetId", "")
            with self.state.lock:
                self.state.dataset_locations[(project, dataset)] = body.get("location") or "US"
        return self._with_location(response, project)

    def dataset(self, request: Request, project: str, dataset: str) -> Response:
        """`datasets.get` (allowed), `patch`/`update`/`delete` (need more than Data Editor)."""
        needed = {
            "DELETE": "bigquery.datasets.delete",
            "PATCH": "bigquery.datasets.update",
            "PUT": "bigquery.datasets.update",
        }.get(request.method, "bigquery.datasets.get")
        refusal = self._permission(request, project, needed)
        if refusal is not None:
            return refusal
        response = self.upstream.send(request)
        if request.method == "DELETE" and response.status in (200, 204):
            with self.state.lock:
                self.state.dataset_locations.pop((project, dataset), None)
        return self._with_location(response, project)

    def _permission(self, request: Request, project: str, permission: str) -> Response | None:
        if request.principal.may(permission):
            return None
        message = (
            f"Access Denied: Project {project}: User does not have {permission} permission "
            f"in project {project}."
        )
        VIOLATIONS.record("permission", f"{message} (principal: {request.principal.name})",
                          request.describe())  # fmt: skip
        return error_response(403, "accessDenied", message)

    def _with_location(self, response: Response, project: str) -> Response:
        body = response.json()
        if response.status != 200 or body is None:
            return response
        reference = body.get("datasetReference") or body.get("tableReference") or {}
        location = self.jobs.dataset_location(project, reference.get("datasetId", ""))
        if location:
            body["location"] = location
        return response.with_json(body)

    # --- tables ------------------------------------------------------------------------------
    def tables_insert(self, request: Request, project: str, dataset: str) -> Response:
        """`tables.insert`: a new table gets its first etag."""
        response = self.upstream.send(request)
        body = response.json()
        if response.status == 200 and body is not None:
            table = (body.get("tableReference") or {}).get("tableId", "")
            body["etag"] = self.state.new_etag((project, dataset, table))
            response = response.with_json(body)
        return self._with_location(response, project)

    def table(self, request: Request, project: str, dataset: str, table: str) -> Response:
        """`tables.get` / `patch` / `update` / `delete`, with the front's etags."""
        key = (project, dataset, table)
        modifying = request.method in ("PATCH", "PUT")
        if modifying:
            wanted = request.header("if-match")
            if wanted and wanted.strip('"') != self.state.etag(key):
                return error_response(412, "conditionNotMet", "Precondition check failed.")
        response = self.upstream.send(request, drop_headers=("if-match", "if-none-match"))
        if request.method == "DELETE":
            if response.status in (200, 204):
                with self.state.lock:
                    self.state.etags.pop(key, None)
            return response
        body = response.json()
        if response.status != 200 or body is None:
            return response
        body["etag"] = self.state.new_etag(key) if modifying else self.state.etag(key)
        return self._with_location(response.with_json(body), project)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815 - http.server naming

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: violations are recorded, not logged."""

    def _serve(self) -> None:
        front: StrictFront = self.server.front  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = dict(self.headers.items())
        token = headers.get("Authorization") or headers.get("authorization") or ""
        principal = ADMIN if token == f"Bearer {ADMIN_TOKEN}" else front.state.principal
        request = Request(self.command, self.path, headers, body, principal)
        try:
            response = front.handle(request)
        except OSError:  # the emulator is down: BigQuery unreachable
            self.close_connection = True
            return
        except Exception:  # a fault of the front itself: fail the test loudly, not retried
            detail = traceback.format_exc()
            VIOLATIONS.record("strict-front-error", detail.splitlines()[-1], request.describe())
            response = error_response(400, "invalid", f"strict front error:\n{detail}")
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)
