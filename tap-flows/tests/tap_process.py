"""Run the installed `tap-flows` as a real subprocess and read its Singer output."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAP = Path(sys.executable).parent / "tap-flows"


@dataclass
class TapRun:
    """A finished tap process: exit code, parsed stdout messages, stderr text."""

    returncode: int
    messages: list[dict[str, Any]]
    stderr: str

    @property
    def records(self) -> list[dict[str, Any]]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD"]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def final_bookmark(self) -> int:
        return self.states[-1]["bookmarks"]["flows"]["replication_key_value"]

    def types(self) -> list[str]:
        return [m["type"] for m in self.messages]


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def run_tap(
    workdir: Path,
    config: dict[str, Any],
    *,
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 120,
) -> TapRun:
    """Run `tap-flows --config ...` to completion; stdout lines must all be JSON messages."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(TAP), "--config", str(write_json(workdir / "config.json", config))]
    if state is not None:
        cmd += ["--state", str(write_json(workdir / "state.json", state))]
    if catalog is not None:
        cmd += ["--catalog", str(write_json(workdir / "catalog.json", catalog))]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    return TapRun(done.returncode, messages, done.stderr)


def discover(workdir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The catalog printed by `tap-flows --discover`."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(TAP), "--config", str(write_json(workdir / "config.json", config)), "--discover"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def state_for(bookmark: int) -> dict[str, Any]:
    """A saved state whose `flows` bookmark is `bookmark`."""
    return {"bookmarks": {"flows": {"replication_key": "time", "replication_key_value": bookmark}}}
