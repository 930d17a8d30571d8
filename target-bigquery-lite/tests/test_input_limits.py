"""End-to-end regressions from the bad-input catalog: each used to end in a traceback, an
unclear message or a silent change of data; each now fails clearly (exit 1, one line naming
the field or file) or passes the input on exactly.
"""

from __future__ import annotations

import json
import resource
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TARGET, Result, run_target, singer_lines, target_env

SCHEMA = {
    "type": "SCHEMA",
    "stream": "flows",
    "schema": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "name": {"type": ["string", "null"]}},
        "required": ["id"],
    },
    "key_properties": ["id"],
}


def record(**values: Any) -> dict[str, Any]:
    return {"type": "RECORD", "stream": "flows", "record": values}


def assert_clear_failure(result: Result, message: str) -> None:
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.states == []


def test_a_lone_surrogate_fails_naming_the_field(target_config: Callable[..., Path]) -> None:
    data = singer_lines(SCHEMA) + b'{"type": "RECORD", "stream": "flows", "record": '
    data += b'{"id": 1, "name": "a\\ud800b"}}\n'
    for validate in (True, False):
        result = run_target(target_config(validate_records=validate), data)
        assert_clear_failure(
            result, "stream 'flows', record 1: field 'name' holds a lone UTF-16 surrogate"
        )


def test_a_state_with_integers_beyond_64_bits_is_passed_on_exactly(
    target_config: Callable[..., Path],
) -> None:
    data = singer_lines(SCHEMA, record(id=1)) + (
        b'{"type": "STATE", "value": {"cursor": 123456789012345678901234567890}}\n'
    )
    result = run_target(target_config(), data)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['{"cursor": 123456789012345678901234567890}'] * 2


def test_a_line_nested_too_deeply_is_a_clear_error(target_config: Callable[..., Path]) -> None:
    deep = b'{"type": "RECORD", "stream": "flows", "record": {"id": 1, "name": '
    deep += b"[" * 50_000 + b"]" * 50_000 + b"}}\n"
    result = run_target(target_config(), singer_lines(SCHEMA) + deep)
    assert_clear_failure(result, "input line 2 nests objects or arrays too deeply to parse")


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records every request it gets."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"type": "integer"}')

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", paths
    server.shutdown()
    server.server_close()


def test_a_remote_ref_is_refused_and_never_fetched(
    target_config: Callable[..., Path], listener: tuple[str, list[str]]
) -> None:
    url, paths = listener
    schema = json.loads(json.dumps(SCHEMA))
    schema["schema"]["properties"]["name"] = {"$ref": f"{url}/name.json"}
    result = run_target(target_config(), singer_lines(schema, record(id=1, name=1)))
    assert_clear_failure(result, f"$ref '{url}/name.json' is not a reference into the schema")
    assert paths == []


def test_an_unusable_staging_dir_is_named(
    target_config: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    config = target_config(staging_dir=str(tmp_path / "a-file" / "staging"))
    result = run_target(config, singer_lines(SCHEMA, record(id=1)))
    assert_clear_failure(result, f"cannot create the staging folder {tmp_path}/a-file/staging/run-")
    assert "check the staging_dir setting" in result.stderr


def limit_file_size() -> None:
    """In the child: files may not grow beyond 64 KiB (writes then fail with EFBIG)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_full_staging_disk_is_a_clear_error(
    target_config: Callable[..., Path], tmp_path: Path
) -> None:
    records = [record(id=n, name="x" * 100) for n in range(1, 2001)]
    proc = subprocess.run(
        [*TARGET, "--config", str(target_config(batch_max_rows=1000))],
        input=singer_lines(SCHEMA, *records),
        capture_output=True,
        timeout=120,
        env=target_env(),
        preexec_fn=limit_file_size,
    )
    result = Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    assert_clear_failure(result, f"cannot write staging file {tmp_path}/staging/run-")
    assert "File too large (errno 27)" in result.stderr
    assert "a file size limit (ulimit -f) stopped it" in result.stderr
