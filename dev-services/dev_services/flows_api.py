"""Start flows-api (from .venv) on a loopback port."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dev_services.process import Service, free_port, start_process, wait_until_ready


def flows_api_command() -> str:
    """The flows-api executable next to the running Python (the project's .venv)."""
    return os.environ.get("FLOWS_API_BIN", str(Path(sys.executable).parent / "flows-api"))


def start_flows_api(
    db: Path,
    log_path: Path,
    *,
    port: int | None = None,
    api_key: str | None = None,
    workers: int = 2,
    threads: int = 8,
    extra_args: tuple[str, ...] = (),
) -> Service:
    """Serve `db` on 127.0.0.1:`port` (a free one if None) and return once /healthz answers."""
    port = port or free_port()
    cmd = [
        flows_api_command(),
        "serve",
        "--db",
        str(db),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        *extra_args,
    ]
    env = {"FLOWS_API_KEY": api_key} if api_key else {}
    process = start_process("flows-api", cmd, log_path, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until_ready("flows-api", f"{url}/healthz", process, log_path, timeout=30)
    return Service("flows-api", process.pid, url, log_path, process)
