"""A tiny in-process flows API for hostile-server tests: wrong order, or a dripping body.

It filters like the real API (rows strictly after `since`/`after_id`, or from `since`,
before `until`, at most `limit`) but serves them in the order given, so a test can make
a server that breaks the `(time, id)` order; or it answers with headers and then one
byte every `drip_seconds`, a body that never ends in useful time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

_FIELDS = {
    "duration": 1, "src_comp": "C1", "src_port": "N1", "dst_comp": "C2", "dst_port": "443",
    "protocol": 6, "packet_count": 1, "byte_count": 60,
}  # fmt: skip


def flows_rows(count: int, per_time: int = 3) -> list[dict[str, Any]]:
    """`count` valid flows rows in `(time, id)` order, `per_time` rows sharing each time."""
    return [{"id": i, "time": 100 + i // per_time, **_FIELDS} for i in range(count)]


def swapped(rows: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """`rows` with rows `index` and `index + 1` served the wrong way round."""
    served = list(rows)
    served[index], served[index + 1] = served[index + 1], served[index]
    return served


def _page(served: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The real API's filter applied to `served`, keeping its order."""

    def arg(name: str) -> int | None:
        return int(query[name][0]) if name in query else None

    since, after_id, until, limit = arg("since"), arg("after_id"), arg("until"), arg("limit")
    page = []
    for row in served:
        key = (row["time"], row["id"])
        if after_id is not None and since is not None and key <= (since, after_id):
            continue
        if after_id is None and since is not None and row["time"] < since:
            continue
        if until is not None and row["time"] >= until:
            continue
        page.append(row)
    return page[:limit]


@contextmanager
def fake_api(
    served: list[dict[str, Any]] | None = None, *, drip_seconds: float | None = None
) -> Iterator[tuple[str, list[str]]]:
    """Serve `served` (or drip) on a free 127.0.0.1 port; yields the URL and request paths."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            if drip_seconds is not None:
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                try:
                    for _ in range(1_000_000):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(drip_seconds)
                except OSError:
                    return
                return
            query = parse_qs(urlsplit(self.path).query)
            body = b"".join(orjson.dumps(row) + b"\n" for row in _page(served or [], query))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            """Keep the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()
