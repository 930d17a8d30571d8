"""Read the data of load-job uploads as they pass: multipart bodies and resumable sessions.

A multipart upload carries the job's metadata and the whole file in one request. A
resumable one starts with the metadata (POST), then sends the file in chunks (PUT, 8 MiB
each from the target) until the one whose `Content-Range` reaches the total size; the
front feeds each chunk to the session's checker, so nothing but one partial line is
kept in memory. gzip-compressed data is decompressed on the way.
"""

from __future__ import annotations

import json
import re
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from dev_services.load_checks import NdjsonChecker
from dev_services.strict_http import Request, Response, json_response
from dev_services.strict_jobs import JobRules, table_ref
from dev_services.strict_state import VIOLATIONS

_RANGE_RE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass
class UploadSession:
    """One load job's upload: its metadata and the checker its data is fed to."""

    metadata: dict[str, Any]
    checker: NdjsonChecker | None
    inflater: Any = None
    received: int = 0
    chunks: list[int] = field(default_factory=list)

    def feed(self, data: bytes) -> None:
        """Check another piece of the file."""
        self.received += len(data)
        if self.checker is None or not data:
            return
        if self.inflater is None and not self.chunks and data[:2] == b"\x1f\x8b":
            self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.chunks.append(len(data))
        self.checker.feed(self.inflater.decompress(data) if self.inflater else data)

    def finish(self) -> None:
        """The file is complete: check its last line."""
        if self.checker is not None:
            if self.inflater is not None:
                self.checker.feed(self.inflater.flush())
            self.checker.finish()


def is_final_chunk(content_range: str | None) -> bool:
    """Whether a resumable PUT with this `Content-Range` completes the upload."""
    if not content_range:
        return True  # a single PUT with the whole file
    match = _RANGE_RE.fullmatch(content_range.strip())
    if match is None:
        return False
    _start, end, total = match.groups()
    if total == "*":
        return False
    return end is None or int(end) + 1 == int(total)


def split_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes]:
    """The (metadata, data) of a `multipart/related` upload body.

    Raises:
        ValueError: when the body is not a two-part upload.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise ValueError("multipart upload without a boundary")
    delimiter = b"--" + match.group(1).encode()
    parts = []
    for piece in body.split(delimiter)[1:]:
        if piece.startswith(b"--"):
            break
        _head, _, content = piece.partition(b"\r\n\r\n")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        parts.append(content)
    if len(parts) != 2:
        raise ValueError(f"multipart upload with {len(parts)} parts, expected 2")
    return json.loads(parts[0]), parts[1]


class UploadRules:
    """Load-job uploads: check the data as it passes; fail the job as BigQuery would."""

    def __init__(self, jobs: JobRules) -> None:
        """Share the job rules' state, emulator and locations."""
        self.jobs = jobs
        self.sessions: dict[str, UploadSession] = {}

    # --- uploads -------------------------------------------------------------------------------
    def upload_start(self, request: Request, project: str) -> Response:
        """POST of an upload: multipart (checked whole) or the start of a resumable session."""
        kind = request.query.get("uploadType", "")
        if kind == "multipart":
            try:
                metadata, data = split_multipart(request.header("content-type") or "", request.body)
            except ValueError:
                return self.jobs.upstream.send(request)
            session = self._session(metadata, project)
            session.feed(data)
            session.finish()
            return self._complete(request, project, session)
        if kind != "resumable":
            return self.jobs.upstream.send(request)
        response = self.jobs.upstream.send(request)
        location_header = next((k for k in response.headers if k.lower() == "location"), None)
        if response.status != 200 or location_header is None:
            return response
        upstream_url = urlsplit(response.headers[location_header])
        upload_id = dict(parse_qsl(upstream_url.query)).get("upload_id")
        if upload_id:
            self.sessions[upload_id] = self._session(request.json(), project)
        response.headers[location_header] = (
            self.jobs.front_url()
            + upstream_url.path
            + (f"?{upstream_url.query}" if upstream_url.query else "")
        )
        return response

    def upload_chunk(self, request: Request, project: str) -> Response:
        """PUT of a resumable upload's chunk; the last one completes (or fails) the job."""
        upload_id = request.query.get("upload_id", "")
        session = self.sessions.get(upload_id)
        if session is None:
            return self.jobs.upstream.send(request)
        content_range = request.header("content-range")
        start = _range_start(content_range)
        data = request.body
        if start is not None and start < session.received:
            data = data[session.received - start :]
        session.feed(data)
        if not is_final_chunk(content_range):
            return self.jobs.upstream.send(request)
        session.finish()
        del self.sessions[upload_id]
        return self._complete(request, project, session)

    def _session(self, metadata: dict[str, Any], project: str) -> UploadSession:
        load = (metadata.get("configuration") or {}).get("load") or {}
        fields = (load.get("schema") or {}).get("fields")
        destination = load.get("destinationTable")
        if fields is None and destination:
            fields = (
                (self.jobs.table(table_ref(destination, project)) or {}).get("schema") or {}
            ).get("fields")
        checker = None
        if fields is not None and load.get("sourceFormat") == "NEWLINE_DELIMITED_JSON":
            checker = NdjsonChecker(fields, ignore_unknown=bool(load.get("ignoreUnknownValues")))
        return UploadSession(metadata, checker)

    def _complete(self, request: Request, project: str, session: UploadSession) -> Response:
        """The whole file is in: fail the job like BigQuery, or let the emulator create it."""
        metadata = session.metadata
        load = (metadata.get("configuration") or {}).get("load") or {}
        reference = metadata.get("jobReference") or {}
        job_id = reference.get("jobId") or uuid.uuid4().hex
        destination = (
            [table_ref(load["destinationTable"], project)] if load.get("destinationTable") else []
        )
        location, refusal = self.jobs.location(reference.get("location"), destination)
        if refusal is not None:
            return refusal
        refusal = self.jobs.count(destination, request)
        if refusal is not None:
            return refusal
        checker = session.checker
        if checker is not None and checker.errors:
            return self._failed_load(
                request,
                project,
                job_id=job_id,
                location=location,
                metadata=metadata,
                checker=checker,
            )
        return self.jobs.created(self.jobs.upstream.send(request), project, job_id, location)

    def _failed_load(
        self,
        request: Request,
        project: str,
        *,
        job_id: str,
        location: str,
        metadata: dict[str, Any],
        checker: NdjsonChecker,
    ) -> Response:
        summary = (
            "Error while reading data, error message: JSON table encountered too many errors, "
            f"giving up. Rows: {checker.rows}; errors: {checker.errors}. Please look into the "
            "errors[] collection for more details."
        )
        errors = [{"reason": "invalid", "message": summary}] + [
            {"reason": "invalid", "message": f"Error while reading data, error message: {m}"}
            for m in checker.messages
        ]
        now = str(int(time.time() * 1000))
        job = {
            "kind": "bigquery#job",
            "id": f"{project}:{location}.{job_id}",
            "jobReference": {"projectId": project, "jobId": job_id, "location": location},
            "configuration": {**(metadata.get("configuration") or {}), "jobType": "LOAD"},
            "status": {"state": "DONE", "errorResult": errors[0], "errors": errors},
            "statistics": {"creationTime": now, "startTime": now, "endTime": now},
        }
        with self.jobs.state.lock:
            self.jobs.state.failed_jobs[(project, job_id)] = job
            self.jobs.state.job_locations[(project, job_id)] = location
        destination = (metadata.get("configuration") or {}).get("load", {}).get("destinationTable")
        table = table_ref(destination, project).full_name if destination else "?"
        VIOLATIONS.record(
            "load",
            f"load job {job_id} into {table}: " + "; ".join(checker.messages),
            request.describe()[:300],
        )
        return json_response(200, job)


def _range_start(content_range: str | None) -> int | None:
    if not content_range or not content_range.startswith("bytes "):
        return None
    first = content_range[6:].split("-", 1)[0]
    return int(first) if first.isdigit() else None
