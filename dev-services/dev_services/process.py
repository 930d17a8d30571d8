"""Background service processes: start in their own session, wait until they answer, stop by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(os.environ.get("DEV_SERVICES_ROOT", Path(__file__).resolve().parents[2]))
RUN_DIR = Path(os.environ.get("DEV_SERVICES_RUN_DIR", ROOT / ".run"))


class ServiceError(RuntimeError):
    """A service did not start or answered wrongly; the message includes its log tail."""


@dataclass
class Service:
    """A started service: what to call it, where it answers, how to stop it."""

    name: str
    pid: int
    url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the service and everything it started."""
        stop_pid(self.pid, timeout=timeout)
        if self.process is not None:
            self.process.wait(timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the service's log, for error messages."""
        return log_tail(self.log_path, lines)


def log_tail(path: Path, lines: int = 30) -> str:
    """Last `lines` lines of a log file ('' if it does not exist)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def start_process(
    name: str, cmd: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `cmd` in a new session (so stopping its group stops its children), output to a log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"--- {name}: {' '.join(cmd)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def wait_until_ready(
    name: str,
    url: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    *,
    timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Poll `url` until it answers 200.

    While nothing listens yet, keep polling; any other HTTP status means the service is
    broken (waiting longer would not help), so it is stopped and reported with its log.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if process.poll() is not None:
            raise ServiceError(
                f"{name} exited with code {process.returncode} before answering.\n"
                f"--- {log_path}:\n{log_tail(log_path)}"
            )
        try:
            response = requests.get(url, timeout=5, headers=dict(headers or {}))
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or busy
            response = None
        if response is not None:
            if response.status_code == 200:
                return
            stop_pid(process.pid)
            raise ServiceError(
                f"{name} answered {response.status_code} at {url}: "
                f"{response.text[:300]}\n--- {log_path}:\n{log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            stop_pid(process.pid)
            raise ServiceError(
                f"{name} did not answer at {url} within {timeout:.0f} s.\n"
                f"--- {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (zombies count as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL what is left after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            _reap(pid)
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not _group_alive(pid):
                return
            time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
