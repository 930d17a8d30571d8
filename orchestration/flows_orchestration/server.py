"""Start `dagster dev` (webserver, daemon, code server) on a loopback port, and stop it.

`make orchestrate` runs it in the foreground; the backfill launcher and the tests start it
in the background when no Dagster answers yet, and stop exactly what they started.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests
from dev_services.process import Service, ServiceError, log_tail, start_process, stop_pid

from flows_orchestration.graphql import DagsterApiError, DagsterClient
from flows_orchestration.instance import WORKSPACE, ensure_instance
from flows_orchestration.project import find_root

START_TIMEOUT = 180.0


def dagster_dev_argv(port: int) -> list[str]:
    """`dagster dev` on 127.0.0.1:`port` with this project's workspace."""
    dagster = Path(sys.executable).parent / "dagster"
    return [str(dagster), "dev", "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(port)]


def dagster_env(home: Path) -> dict[str, str]:
    """The environment of `dagster dev`: its instance, the Meltano project root."""
    return {"DAGSTER_HOME": str(home), "MELTANO_PROJECT_ROOT": str(find_root())}


def answers(url: str) -> bool:
    """Whether a Dagster webserver answers at `url`."""
    try:
        return requests.get(f"{url}/server_info", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def start_dagster(
    port: int, log_path: Path, home: Path, env: Mapping[str, str] | None = None
) -> Service:
    """Start `dagster dev` in the background; return once the code location has loaded."""
    ensure_instance(home)
    process = start_process(
        "dagster", dagster_dev_argv(port), log_path, env={**dagster_env(home), **(env or {})}
    )
    url = f"http://127.0.0.1:{port}"
    client = DagsterClient(url, timeout=10)
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.2
    while True:
        if process.poll() is not None:
            raise ServiceError(
                f"dagster dev exited with code {process.returncode} before answering.\n"
                f"--- {log_path}:\n{log_tail(log_path)}"
            )
        try:
            if answers(url) and client.location_loaded():
                return Service("dagster", process.pid, url, log_path, process)
        except (DagsterApiError, requests.RequestException) as exc:
            if isinstance(exc, DagsterApiError) and "failed to load" in str(exc):
                stop_pid(process.pid)
                raise ServiceError(f"{exc}\n--- {log_path}:\n{log_tail(log_path)}") from exc
        if time.monotonic() > deadline:
            stop_pid(process.pid)
            raise ServiceError(
                f"dagster dev did not load its code location within {START_TIMEOUT:.0f} s.\n"
                f"--- {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def exec_dagster_dev(port: int) -> None:
    """Replace this process with `dagster dev` in the foreground (`make orchestrate`)."""
    home = ensure_instance()
    argv = dagster_dev_argv(port)
    os.execve(argv[0], argv, {**os.environ, **dagster_env(home)})  # noqa: S606
