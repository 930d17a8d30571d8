"""Call the project's `meltano` CLI: run a job with its output streamed, read configs and state.

Only Meltano's command line is used (not its Python internals), so this works with any
Meltano release the project allows and any state backend it is configured with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows_orchestration.project import MeltanoProject
from flows_orchestration.streams import committed_rows, read_lines


class MeltanoError(RuntimeError):
    """A meltano command failed; the message holds its last output lines."""


def meltano_executable() -> str:
    """`meltano` next to the running Python (the project's .venv), else on PATH."""
    beside = Path(sys.executable).parent / "meltano"
    if beside.exists():
        return str(beside)
    found = shutil.which("meltano")
    if found is None:
        raise MeltanoError("meltano is not installed next to this Python nor on PATH")
    return found


def meltano_argv(project: MeltanoProject, *args: str) -> list[str]:
    """A meltano command line in the project's environment."""
    return [meltano_executable(), "--environment", project.environment, *args]


@dataclass
class RunOutcome:
    """What one `meltano run` did: its exit code, rows committed per stream, last lines."""

    code: int
    rows: dict[str, int] = field(default_factory=dict)
    tail: list[str] = field(default_factory=list)


def run_job(
    project: MeltanoProject, job: str, log: Callable[[str], None], *, full_refresh: bool = False
) -> RunOutcome:
    """`meltano run <job>`, each output line passed to `log` as it arrives."""
    argv = meltano_argv(project, "run", *(["--full-refresh"] if full_refresh else []), job)
    process = subprocess.Popen(
        argv,
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert process.stdout is not None
    outcome = RunOutcome(code=0)
    with process:
        for _, raw in read_lines({"meltano": process.stdout}):
            line = raw.decode(errors="replace").rstrip()
            log(line)
            committed_rows(line, outcome.rows)
            outcome.tail = [*outcome.tail[-19:], line]
    outcome.code = process.returncode
    return outcome


def _output(project: MeltanoProject, *args: str) -> str:
    done = subprocess.run(
        meltano_argv(project, *args),
        cwd=project.root,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise MeltanoError(f"meltano {' '.join(args)} failed (exit {done.returncode}): {tail}")
    return done.stdout


def plugin_configs(project: MeltanoProject, *plugins: str) -> list[dict[str, Any]]:
    """The resolved configs of `plugins` (environment, env vars, secrets), fetched in parallel.

    These hold secrets: keep them in memory or in private files, never in logs or metadata.
    """
    with ThreadPoolExecutor(max_workers=len(plugins)) as pool:
        texts = list(
            pool.map(lambda name: _output(project, "config", "--unsafe", "print", name), plugins)
        )
    return [json.loads(text) for text in texts]


def saved_bookmark(project: MeltanoProject, state_id: str) -> Any:
    """The `flows` bookmark Meltano saved for `state_id` (None when it has none)."""
    text = _output(project, "state", "get", state_id).strip()
    if not text:
        return None
    return bookmark_of(json.loads(text).get("singer_state", {}))


def bookmark_of(state: dict[str, Any]) -> Any:
    """The replication key value of the first stream bookmarked in a Singer state."""
    for bookmark in (state.get("bookmarks") or {}).values():
        if isinstance(bookmark, dict) and "replication_key_value" in bookmark:
            return bookmark["replication_key_value"]
    return None
