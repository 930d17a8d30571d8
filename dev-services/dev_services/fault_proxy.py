"""A loopback HTTP proxy for tests that breaks responses on purpose, following a script.

Placed between a client (the tap) and a real upstream (flows-api), it relays GET
requests and applies one planned fault per request, in order::

    proxy = FaultProxy(api.url, plan=[Fault.cut_after_bytes(50_000), Fault.status(500),
                                      Fault.status(429, retry_after=1), None])
    with proxy:
        run_the_tap(api_url=proxy.url)
    assert [r.fault for r in proxy.requests][:3] == proxy.plan[:3]

Each request takes the next entry of the plan; `None`, or an exhausted plan, relays
the request untouched. Every request is recorded (`proxy.requests`: path, query,
headers, fault, status and body bytes sent, timings, relay error) so tests can prove
that retries really happened, and when.

Bodies are sent to the client with chunked transfer encoding, as gunicorn does, so
the framing itself tells a cut connection (no final chunk) from a complete body; a
"truncated" body on the other hand is properly framed and only its last line is
incomplete. Everything runs in daemon threads of the test process, on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

_FORWARDED_REQUEST_HEADERS = ("Authorization", "Accept", "User-Agent")
_FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Retry-After", "WWW-Authenticate")
_READ_BYTES = 1 << 16


@dataclass(frozen=True)
class Fault:
    """One planned misbehaviour; build it with the class methods, which document each kind."""

    kind: str
    status_code: int = 200
    after_bytes: int = 0
    after_lines: int = 0
    count: int = 0
    delay: float = 0.0
    retry_after: float | None = None
    line: bytes = b""
    reset: bool = False

    @classmethod
    def status(cls, code: int, *, retry_after: float | None = None) -> Fault:
        """Answer `code` with a JSON error body, without asking upstream (500, 503, 429...).

        Args:
            code: The HTTP status to answer.
            retry_after: Seconds to send as `Retry-After`, if any.
        """
        return cls("status", status_code=code, retry_after=retry_after)

    @classmethod
    def cut_after_bytes(cls, n: int, *, reset: bool = False) -> Fault:
        """Relay `n` body bytes (or the whole body, if shorter), then drop the connection.

        The client sees a chunked body without its final chunk: a broken response.

        Args:
            n: Body bytes to relay first (0 cuts right after the headers).
            reset: Send a TCP reset (connection reset by peer) instead of a clean close.
        """
        return cls("cut", after_bytes=n, reset=reset)

    @classmethod
    def truncate_mid_line(cls, after_lines: int) -> Fault:
        """Relay `after_lines` lines and half of the next, then end the body properly.

        The HTTP framing is complete; only the NDJSON is cut, mid-line.

        Args:
            after_lines: Complete lines to relay first; the body must have more.
        """
        return cls("truncate", after_lines=after_lines)

    @classmethod
    def slow(cls, chunk_bytes: int, delay: float) -> Fault:
        """Trickle the body: `chunk_bytes` at a time, `delay` seconds apart.

        Args:
            chunk_bytes: Bytes per write.
            delay: Seconds between writes (above the client's read timeout, it times out).
        """
        return cls("slow", after_bytes=chunk_bytes, delay=delay)

    @classmethod
    def garbage_line(cls, after_lines: int, line: bytes = b"<html>502 Bad Gateway</html>") -> Fault:
        """Insert a line that is not JSON after `after_lines` lines of the body.

        Args:
            after_lines: Lines to relay before the garbage.
            line: The garbage, without its newline.
        """
        return cls("garbage", after_lines=after_lines, line=line)

    @classmethod
    def duplicate_lines(cls, after_lines: int, count: int) -> Fault:
        """After `after_lines` lines, send the last `count` of them again, then go on.

        Args:
            after_lines: Lines to relay before repeating.
            count: How many of those lines to repeat (<= after_lines).
        """
        return cls("duplicate", after_lines=after_lines, count=count)

    @classmethod
    def empty(cls) -> Fault:
        """Answer 200 with an empty body, as if there were no rows, without asking upstream."""
        return cls("empty")


@dataclass
class ProxiedRequest:
    """What the proxy received and what it did about it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    fault: Fault | None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    status: int | None = None
    body_bytes: int = 0
    error: str | None = None


class FaultProxy:
    """A threaded loopback proxy to `upstream_url` that applies `plan`, one fault per request."""

    def __init__(
        self, upstream_url: str, plan: Sequence[Fault | None] = (), *, timeout: float = 30.0
    ) -> None:
        """Prepare the proxy; `start()` opens its port.

        Args:
            upstream_url: Base URL of the real server, e.g. http://127.0.0.1:5055.
            plan: Faults for the first requests, in order; None relays untouched.
            timeout: Socket timeout towards the upstream, in seconds.
        """
        upstream = urlsplit(upstream_url)
        if upstream.scheme != "http" or upstream.hostname is None:
            msg = f"upstream must be an http:// URL, got {upstream_url!r}"
            raise ValueError(msg)
        self.upstream_host = upstream.hostname
        self.upstream_port = upstream.port or 80
        self.timeout = timeout
        self.plan: list[Fault | None] = list(plan)
        self.requests: list[ProxiedRequest] = []
        self._lock = threading.Lock()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The proxy's base URL (only once started)."""
        if self._server is None:
            msg = "the proxy is not started"
            raise RuntimeError(msg)
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> str:
        """Listen on a free loopback port in a background thread; return the proxy's URL."""
        self._server = _ProxyServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop listening and close the port (requests in flight end with their threads)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def faults_applied(self) -> list[Fault]:
        """The faults applied so far, in request order (pass-through requests left out)."""
        with self._lock:
            return [r.fault for r in self.requests if r.fault is not None]

    def _take(self, path: str, headers: dict[str, str]) -> ProxiedRequest:
        """Record a new request (for the handler) and pick its fault: the next plan entry."""
        split = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        with self._lock:
            fault = self.plan[len(self.requests)] if len(self.requests) < len(self.plan) else None
            record = ProxiedRequest(split.path, query, headers, fault)
            self.requests.append(record)
        return record


class _ProxyServer(ThreadingHTTPServer):
    """One thread per connection, each knowing its proxy."""

    daemon_threads = True

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy


class _Handler(BaseHTTPRequestHandler):
    """Relays one GET per connection and applies the request's fault."""

    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def do_GET(self) -> None:
        proxy = self.server.proxy
        record = proxy._take(self.path, dict(self.headers))
        self.close_connection = True
        try:
            self._answer(proxy, record)
        except (OSError, http.client.HTTPException) as exc:  # a side hung up, or we did
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            record.finished = time.monotonic()

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the test reads `proxy.requests` instead."""

    def _answer(self, proxy: FaultProxy, record: ProxiedRequest) -> None:
        fault = record.fault
        if fault is not None and fault.kind == "status":
            body = json.dumps({"error": f"fault proxy: planned HTTP {fault.status_code}"})
            headers = {"Content-Type": "application/json"}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            self._send_whole(record, fault.status_code, headers, body.encode())
            return
        if fault is not None and fault.kind == "empty":
            self._send_whole(record, 200, {"Content-Type": "application/x-ndjson"}, b"")
            return
        upstream = http.client.HTTPConnection(
            proxy.upstream_host, proxy.upstream_port, timeout=proxy.timeout
        )
        try:
            headers = {k: v for k in _FORWARDED_REQUEST_HEADERS if (v := self.headers.get(k))}
            upstream.request("GET", self.path, headers=headers)
            response = upstream.getresponse()
            self.send_response(response.status)
            for name in _FORWARDED_RESPONSE_HEADERS:
                if (value := response.getheader(name)) is not None:
                    self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            record.status = response.status
            body = iter(lambda: response.read1(_READ_BYTES), b"")
            try:
                for piece in _apply(fault, body):
                    if piece:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        record.body_bytes += len(piece)
            except _CutConnection as cut:
                self._cut(reset=cut.reset)
                return
            self.wfile.write(b"0\r\n\r\n")
        finally:
            upstream.close()

    def _send_whole(
        self, record: ProxiedRequest, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        record.status = status
        record.body_bytes = len(body)

    def _cut(self, *, reset: bool) -> None:
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        else:
            self.connection.shutdown(socket.SHUT_RDWR)


class _CutConnection(Exception):  # noqa: N818 - an instruction, not an error
    """Raised by `_apply` where the connection must be dropped."""

    def __init__(self, *, reset: bool) -> None:
        super().__init__("cut")
        self.reset = reset


def _apply(fault: Fault | None, body: Iterable[bytes]) -> Iterator[bytes]:
    """The body as the fault wants it relayed; raises _CutConnection where it must stop."""
    if fault is None:
        yield from body
    elif fault.kind == "cut":
        yield from _cut_after(body, fault.after_bytes)
        raise _CutConnection(reset=fault.reset)
    elif fault.kind == "slow":
        for chunk in body:
            for start in range(0, len(chunk), fault.after_bytes):
                time.sleep(fault.delay)
                yield chunk[start : start + fault.after_bytes]
    else:
        yield from _edit_lines(fault, body)


def _cut_after(body: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """The first `limit` bytes of the body."""
    sent = 0
    for chunk in body:
        if sent + len(chunk) >= limit:
            yield chunk[: limit - sent]
            return
        sent += len(chunk)
        yield chunk


def _edit_lines(fault: Fault, body: Iterable[bytes]) -> Iterator[bytes]:
    """Line-level faults: truncate mid-line, insert garbage, repeat lines."""
    lines = _lines(body)
    head = [line for _, line in zip(range(fault.after_lines), lines, strict=False)]
    yield b"".join(head)
    if fault.kind == "truncate":
        following = next(lines, b"")
        yield following[: max(1, len(following) // 2)].rstrip(b"\n")
        return
    if fault.kind == "garbage":
        yield fault.line + b"\n"
    elif fault.kind == "duplicate":
        yield b"".join(head[len(head) - fault.count :])
    yield from lines


def _lines(body: Iterable[bytes]) -> Iterator[bytes]:
    """Complete lines (with their newline), then any unterminated tail."""
    pending = b""
    for chunk in body:
        parts = (pending + chunk).split(b"\n")
        pending = parts.pop()
        yield from (part + b"\n" for part in parts)
    if pending:
        yield pending
