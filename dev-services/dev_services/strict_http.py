"""HTTP pieces of the strict front: one request, one response, BigQuery-shaped errors, relaying.

Each rule module gets a `Request` and returns a `Response`, either made up (an error as
BigQuery words it, a failed job) or the emulator's (`Upstream.send`), possibly rewritten.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from dev_services.strict_state import Principal

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                        "upgrade", "proxy-connection", "content-length", "host"})  # fmt: skip
_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION"}  # fmt: skip


@dataclass
class Request:
    """One request to the front."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    principal: Principal

    @property
    def path(self) -> str:
        """The path without the query string."""
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        """The query parameters (last value wins)."""
        return dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object ({} when empty or not JSON)."""
        try:
            value = json.loads(self.body or b"{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def without_query(self, *names: str) -> str:
        """The target with these query parameters removed (the emulator does not know them)."""
        parts = urlsplit(self.target)
        kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in names]
        return parts.path + (f"?{urlencode(kept)}" if kept else "")

    def describe(self) -> str:
        """`METHOD path` and a short body, for violation records."""
        body = self.body[:2000].decode("utf-8", "replace") if self.body else ""
        return f"{self.method} {self.target} {body}".strip()


@dataclass
class Response:
    """A response to send back."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> dict[str, Any] | None:
        """The body as a JSON object, if it is one."""
        try:
            value = json.loads(self.body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def with_json(self, value: dict[str, Any]) -> Response:
        """The same response with another JSON body."""
        headers = {k: v for k, v in self.headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = "application/json; charset=UTF-8"
        return Response(self.status, headers, json.dumps(value).encode())


def json_response(status: int, value: dict[str, Any]) -> Response:
    """A JSON response."""
    return Response(status, {"Content-Type": "application/json; charset=UTF-8"},
                    json.dumps(value).encode())  # fmt: skip


def error_response(status: int, reason: str, message: str, **extra: str) -> Response:
    """An error as BigQuery's REST API returns it."""
    item = {"message": message, "domain": "global", "reason": reason, **extra}
    status_name = _STATUS.get(status, "UNKNOWN")
    return json_response(
        status,
        {"error": {"code": status, "message": message, "errors": [item], "status": status_name}},
    )


class Upstream:
    """The emulator behind the front."""

    def __init__(self, host: str, port: int) -> None:
        """Relay to http://host:port."""
        self.host, self.port = host, port

    def send(self, request: Request, target: str | None = None, body: bytes | None = None,
             drop_headers: tuple[str, ...] = ()) -> Response:  # fmt: skip
        """Relay the request (optionally to another target or with another body)."""
        skip = HOP_BY_HOP | {name.lower() for name in drop_headers}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        return self.call(
            request.method,
            target or request.target,
            request.body if body is None else body,
            headers,
        )

    def call(
        self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        """One request to the emulator; connection errors propagate (the front drops the client)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=600)
        try:
            connection.request(method, target, body=body, headers=headers or {})
            answer = connection.getresponse()
            payload = answer.read()
            kept = {k: v for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP}
        finally:
            connection.close()
        return Response(answer.status, kept, payload)

    def get_json(self, target: str) -> dict[str, Any] | None:
        """GET a resource straight from the emulator (None unless 200)."""
        response = self.call("GET", target)
        return response.json() if response.status == 200 else None
