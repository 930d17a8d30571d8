"""A loopback proxy in front of the BigQuery emulator that can hold or fail chosen requests.

The target talks to BigQuery's REST API through it (its `api_endpoint` is the proxy's URL).
Rules match requests by method, path and body and either

* **hold** a request: it is not forwarded until the rule is released (or the proxy stops),
  so a test knows the client is blocked at that exact step, e.g. dropping a staging table
  after its MERGE committed and before the STATE that follows; or
* **fail** a request with a BigQuery-shaped JSON error, without forwarding it, e.g. a MERGE
  rejected for a concurrent update, which the emulator itself never produces; or
* **lose** a response: the request is forwarded (so it takes effect), and the client gets
  the rule's error instead of the answer, as when a connection drops after BigQuery
  received a request (a 503 makes the client retry: a second `jobs.insert` then meets 409).
* **hold the answer** (`hold-answer`): the request is forwarded (so it takes effect) and its
  answer held until the rule is released (dropped if the proxy stops), so a test knows the
  step is done in BigQuery and the client does not know it yet, e.g. a load job committed
  by the upload that completes it, before the STATE that follows.

    with BigQueryProxy(emulator.url) as proxy:
        drop = proxy.add(Rule("DELETE", r"/tables/_bqlite_stage_", action="hold"))
        ... start the target with api_endpoint=proxy.url ...
        assert drop.matched.wait(60)   # MERGE done, state not yet written: kill it now

Every request is recorded (`proxy.requests`). Loopback only; bodies are buffered, which is
fine for API calls and for the target's 8 MiB upload chunks.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-connection", "content-length", "host"}  # fmt: skip


@dataclass
class Rule:
    """What to do with requests matching `method`, `path` and `body` (regexes, `None` = any).

    `times` is how many matching requests the rule applies to (then it lets them pass), after
    letting the first `skip` pass. `matched` is set when a request matches (for `hold`: once
    it is being held; for `hold-answer`: once its answer is).
    """

    method: str | None = None
    path: str | None = None
    body: str | None = None
    action: str = "hold"
    status: int = 400
    message: str = "injected by BigQueryProxy"
    reason: str = "invalidQuery"
    times: int = 1
    skip: int = 0
    matched: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    hits: int = 0

    def __post_init__(self) -> None:
        if self.action not in {"hold", "fail", "lose", "hold-answer"}:
            raise ValueError(
                f"unknown action {self.action!r}: use 'hold', 'fail', 'lose' or 'hold-answer'"
            )

    def release(self) -> None:
        """Let held requests (and later matching ones) through."""
        self.released.set()

    def applies(self, method: str, path: str, body: bytes) -> bool:
        """Whether this rule takes the request (and counts it)."""
        if self.hits >= self.times:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.path is not None and not re.search(self.path, path):
            return False
        if self.body is not None and not re.search(self.body.encode(), body):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        self.hits += 1
        return True


@dataclass(frozen=True)
class ProxiedCall:
    """One request seen by the proxy, and what became of it."""

    method: str
    path: str
    status: int
    action: str


class BigQueryProxy:
    """Threaded HTTP proxy on 127.0.0.1 applying `Rule`s to requests bound for `upstream`."""

    def __init__(self, upstream: str, rules: list[Rule] | None = None) -> None:
        """Proxy to `upstream` (e.g. the emulator's http://127.0.0.1:PORT)."""
        parts = urlsplit(upstream)
        if parts.hostname not in {"127.0.0.1", "localhost"}:
            raise ValueError("BigQueryProxy only forwards to loopback addresses")
        self.upstream = (parts.hostname, parts.port or 80)
        self.rules: list[Rule] = list(rules or [])
        self.requests: list[ProxiedCall] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        """The proxy's base URL (start it first)."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, rule: Rule) -> Rule:
        """Add a rule (rules are tried in order); returns it, to wait on or release."""
        with self._lock:
            self.rules.append(rule)
        return rule

    def start(self) -> str:
        """Listen on a free loopback port; returns the URL."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.proxy = self  # type: ignore[attr-defined]
        self._server = server
        threading.Thread(target=server.serve_forever, name="bigquery-proxy", daemon=True).start()
        return self.url

    def stop(self) -> None:
        """Release every held request and stop listening."""
        self._stopping.set()
        for rule in self.rules:
            rule.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> BigQueryProxy:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _rule_for(self, method: str, path: str, body: bytes) -> Rule | None:
        with self._lock:
            return next((r for r in self.rules if r.applies(method, path, body)), None)

    def _record(self, call: ProxiedCall) -> None:
        with self._lock:
            self.requests.append(call)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._relay()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815 - http.server naming

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the proxy records requests itself."""

    def _relay(self) -> None:
        proxy: BigQueryProxy = self.server.proxy  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rule = proxy._rule_for(self.command, self.path, body)
        if rule is not None and rule.action == "hold":
            rule.matched.set()
            rule.released.wait()
            if proxy._stopping.is_set():
                self.close_connection = True
                proxy._record(ProxiedCall(self.command, self.path, 0, "held, dropped"))
                return
        if rule is not None and rule.action == "fail":
            rule.matched.set()
            self._fail(rule)
            proxy._record(ProxiedCall(self.command, self.path, rule.status, "failed"))
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection(*proxy.upstream, timeout=600)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            forwarded = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            upstream_url = f"http://{proxy.upstream[0]}:{proxy.upstream[1]}"
            for name, value in forwarded.items():  # resumable uploads continue through us
                if name.lower() == "location" and value.startswith(upstream_url):
                    forwarded[name] = proxy.url + value[len(upstream_url) :]
        finally:
            upstream.close()
        if rule is not None and rule.action == "lose":
            rule.matched.set()
            self._fail(rule)
            proxy._record(ProxiedCall(self.command, self.path, rule.status, "forwarded, lost"))
            return
        if rule is not None and rule.action == "hold-answer":
            rule.matched.set()
            rule.released.wait()
            if proxy._stopping.is_set():
                self.close_connection = True
                proxy._record(ProxiedCall(self.command, self.path, 0, "forwarded, answer dropped"))
                return
        self._send(response.status, forwarded, payload)
        proxy._record(ProxiedCall(self.command, self.path, response.status,
                                  "held, forwarded" if rule else "forwarded"))  # fmt: skip

    def _fail(self, rule: Rule) -> None:
        error = {"code": rule.status, "message": rule.message,
                 "errors": [{"reason": rule.reason, "message": rule.message}]}  # fmt: skip
        self._send(rule.status, {"Content-Type": "application/json"},
                   json.dumps({"error": error}).encode())  # fmt: skip

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
