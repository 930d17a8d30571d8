"""One backfill partition as a `tap-flows | target-bigquery-lite` pipe, its state saved live.

Every STATE line the target prints (only after the rows before it are committed) replaces
the partition's state file at once, atomically (temporary file, fsync, rename): a partition
killed after hours resumes from its last commit. The tap starts from that state, inside the
partition's range (`start_time`/`end_time`); the ranges never overlap, so all partitions
can MERGE into one table at the same time (the target retries BigQuery's concurrent-update
abort as transient).

Why a pipe rather than `meltano run` per partition: two `meltano run`s of one project on
one machine share `.meltano/run/<plugin>/` (catalog, state file) and fail each other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows_orchestration.meltano import bookmark_of
from flows_orchestration.plan import TimeRange
from flows_orchestration.streams import committed_rows, read_lines

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class PipeEnds:
    """The two programs of the pipe and their resolved configs (which may hold secrets)."""

    tap: str
    tap_config: dict[str, Any] = field(repr=False)
    target: str
    target_config: dict[str, Any] = field(repr=False)


@dataclass
class PipeOutcome:
    """Exit codes of tap and target, rows committed per stream, the final bookmark."""

    tap_code: int
    target_code: int
    rows: dict[str, int] = field(default_factory=dict)
    bookmark: Any = None
    tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Both ends exited 0."""
        return self.tap_code == 0 and self.target_code == 0


def executable(name: str) -> str:
    """A plugin's executable: next to the running Python (the project's .venv), else on PATH."""
    beside = BIN / name
    return str(beside) if beside.exists() else shutil.which(name) or name


class PartitionPipe:
    """The files of one partition in the backfill's state folder, and its pipe."""

    def __init__(self, folder: Path, span: TimeRange) -> None:
        """Files are named after the range, so a rerun over the same range finds them."""
        self.folder = folder
        self.span = span
        self.state_path = folder / f"{span.key}.state.json"
        self.pid_path = folder / f"{span.key}.pid"

    def saved_state(self) -> dict[str, Any] | None:
        """The partition's last committed STATE value, if any."""
        try:
            return json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def save_state(self, line: bytes) -> None:
        """Replace the state file with one STATE line, atomically and durably."""
        temporary = self.state_path.with_suffix(".tmp")
        with open(temporary, "wb") as out:
            out.write(line + b"\n")
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(self.state_path)

    def run(self, ends: PipeEnds, log: Callable[[str], None]) -> PipeOutcome:
        """Run the pipe to its end; `log` gets every stderr line of tap and target."""
        self.folder.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix=f".{self.span.key}-", dir=self.folder))
        try:
            return self._run(private, ends, log)
        finally:
            shutil.rmtree(private, ignore_errors=True)
            self.pid_path.unlink(missing_ok=True)

    def _run(self, private: Path, ends: PipeEnds, log: Callable[[str], None]) -> PipeOutcome:
        # 1. configs (they may hold secrets) in a folder only this user can read
        span = {"start_time": self.span.start, "end_time": self.span.end}
        tap_config = write_private(private / "tap.json", {**ends.tap_config, **span})
        target_config = write_private(private / "target.json", ends.target_config)
        tap_argv = [executable(ends.tap), "--config", str(tap_config)]
        if self.saved_state() is not None:
            tap_argv += ["--state", str(self.state_path)]
        # 2. tap | target in one process group of their own, so it can be stopped as a whole
        tap_process = subprocess.Popen(
            tap_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0
        )
        target_process = subprocess.Popen(
            [executable(ends.target), "--config", str(target_config)],
            stdin=tap_process.stdout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=tap_process.pid,
        )
        assert tap_process.stdout is not None
        tap_process.stdout.close()  # the target holds the pipe now
        self.pid_path.write_text(f"{tap_process.pid}\n")
        # 3. save each STATE as it comes; pass every log line on
        outcome = PipeOutcome(tap_code=0, target_code=0)
        pipes = {
            "tap": tap_process.stderr,
            "target": target_process.stderr,
            "state": target_process.stdout,
        }
        with tap_process, target_process:  # closes the pipes and waits for both
            for name, raw in read_lines(pipes):  # type: ignore[arg-type]
                if name == "state":
                    if raw.strip():
                        self.save_state(raw.strip())
                    continue
                line = f"{name}: {raw.decode(errors='replace').rstrip()}"
                log(line)
                committed_rows(line, outcome.rows)
                outcome.tail = [*outcome.tail[-19:], line]
        outcome.tap_code, outcome.target_code = tap_process.returncode, target_process.returncode
        outcome.bookmark = bookmark_of(self.saved_state() or {})
        return outcome


def write_private(path: Path, value: object) -> Path:
    """Write JSON readable by this user only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(value, out)
    return path
