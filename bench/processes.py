"""Run a configuration's processes as one pipe and measure each: CPU (rusage), max RSS.

The benchmark's figures come from here: wall time from first start to last exit, user+sys
CPU seconds from the kernel, and RSS sampled per process (see `RssSampler` for why not
rusage's max RSS).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil
from dev_services.process import Service

RUN_TIMEOUT = 4 * 3600


@dataclass
class Proc:
    """One process of a run: its role, exit code, CPU (rusage) and max RSS (sampled)."""

    name: str
    code: int
    cpu: float
    max_rss_mb: float = 0.0


@dataclass
class Stage:
    """One process of a pipeline."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


ROLES = (("tap-flows", "tap"), ("target-", "target"))
"""Executable names (prefixes) -> role, for processes started by meltano or a Dagster run."""


class RssSampler(threading.Thread):
    """Samples the RSS of a run's processes and their children every SAMPLE_SECONDS.

    rusage's max RSS cannot be used: a child forked from this (large) Python process
    inherits its high-water mark, so every child would report at least the bench's own
    RSS. Sampling reads each process's own resident memory; the peaks of the processes
    measured here last far longer than a sampling interval (memory is flat by design).
    """

    SAMPLE_SECONDS = 0.1

    def __init__(self, roots: dict[int, str]) -> None:
        """Watch the processes `roots` (pid -> stage name) and everything they start."""
        super().__init__(daemon=True)
        self.roots = roots
        self.peaks: dict[str, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        """Sample until `done` is set."""
        while not self.done.wait(self.SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        """One look at every watched process."""
        for pid, stage in self.roots.items():
            try:
                root = psutil.Process(pid)
                tree = [(root, stage)] + [(c, role(c, stage)) for c in root.children(True)]
            except psutil.NoSuchProcess:
                continue
            for process, name in tree:
                try:
                    rss = process.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                self.peaks[name] = max(self.peaks.get(name, 0.0), rss)


class TreeSampler(threading.Thread):
    """CPU and max RSS of the processes a service starts meanwhile (Dagster's run workers).

    Their tap and target are not children of a measured stage, so rusage cannot see them:
    each process's own user+sys CPU is read every SAMPLE_SECONDS and the last reading kept
    (a process's last fraction of a sample interval is missed). Processes already running
    when sampling starts (the webserver, the daemon) are left out.
    """

    SAMPLE_SECONDS = 0.1

    def __init__(self, service: Service) -> None:
        """Watch what `service` starts from now on."""
        super().__init__(daemon=True)
        self.root = psutil.Process(service.pid)
        self.before = {p.pid for p in [self.root, *self.root.children(recursive=True)]}
        self.cpu: dict[int, tuple[str, float]] = {}
        self.peaks: dict[str, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        """Sample until `done` is set."""
        while not self.done.wait(self.SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        """One look at every process the service started since."""
        for process in self.root.children(recursive=True):
            if process.pid in self.before:
                continue
            try:
                name = role(process, "dagster run")
                times = process.cpu_times()
                rss = process.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
            self.cpu[process.pid] = (name, times.user + times.system)
            self.peaks[name] = max(self.peaks.get(name, 0.0), rss)

    def procs(self) -> list[Proc]:
        """Stop sampling; CPU and max RSS per role."""
        self.done.set()
        self.join()
        totals: dict[str, float] = {}
        for name, cpu in self.cpu.values():
            totals[name] = totals.get(name, 0.0) + cpu
        return [Proc(name, 0, cpu, self.peaks[name]) for name, cpu in totals.items()]


def role(process: psutil.Process, default: str) -> str:
    """`tap` or `target` for a tap or target started by a stage, else the stage's name."""
    try:
        command = " ".join(Path(arg).name for arg in process.cmdline()[:2])
    except psutil.Error:
        return default
    for prefix, name in ROLES:
        if any(part.startswith(prefix) for part in command.split()):
            return name
    return f"{default} ({Path(process.cmdline()[0]).name})" if process.cmdline() else default


def run_pipeline(
    stages: Sequence[Stage], log: Path, *, stdout: Path | None = None
) -> tuple[float, list[Proc]]:
    """Run `stages` as one pipe; return the wall time and each process's figures.

    CPU comes from `os.wait4`'s rusage (user+sys of the process and of the children it
    waited for: meltano's tap and target, backfill's pipes); max RSS from `RssSampler`.
    A watchdog kills the whole run after RUN_TIMEOUT.
    """
    started = time.monotonic()
    processes: list[subprocess.Popen[bytes]] = []
    with open(log, "ab") as err, open(stdout or os.devnull, "wb") as out:
        previous: IO[bytes] | None = None
        for number, stage in enumerate(stages):
            last = number == len(stages) - 1
            process = subprocess.Popen(
                stage.argv,
                stdin=previous if previous is not None else subprocess.DEVNULL,
                stdout=out if last else subprocess.PIPE,
                stderr=err,
                env={**os.environ, **stage.env},
                cwd=stage.cwd,
                start_new_session=True,
            )
            if previous is not None:
                previous.close()
            previous = process.stdout
            processes.append(process)
        sampler = RssSampler({p.pid: s.name for p, s in zip(processes, stages, strict=True)})
        sampler.start()
        watchdog = threading.Timer(RUN_TIMEOUT, kill_all, args=(processes,))
        watchdog.start()
        procs = []
        for stage, process in zip(stages, processes, strict=True):
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            procs.append(Proc(stage.name, process.returncode, usage.ru_utime + usage.ru_stime))
        watchdog.cancel()
        sampler.done.set()
        sampler.join()
    seconds = time.monotonic() - started
    for proc in procs:
        proc.max_rss_mb = sampler.peaks.pop(proc.name, 0.0)
    procs += [Proc(name, 0, 0.0, rss) for name, rss in sampler.peaks.items()]
    return seconds, procs


def kill_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """The watchdog: stop a run that hangs."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def service_cpu(services: Sequence[Service]) -> float:
    """User+sys CPU seconds used so far by the services and their children (gunicorn workers)."""
    total = 0.0
    for service in services:
        try:
            root = psutil.Process(service.pid)
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total
