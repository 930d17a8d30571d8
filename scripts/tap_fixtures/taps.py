"""Install third-party taps from PyPI into their own virtualenvs and record what they print.

Each tap gets `.run/taps/<name>/` (pinned versions, Python 3.11 or 3.12), rebuilt only when
its pins change. A recording is the tap's stdout, byte for byte, except that BATCH manifests
are moved next to the fixture and their URLs rewritten to `file://@TAPS_DIR@/...`, which the
tests replace with the fixture folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".run" / "taps"
TAPS_DIR_TOKEN = "@TAPS_DIR@"  # noqa: S105 - a placeholder in fixture files, not a secret


@dataclass(frozen=True)
class Tap:
    """A tap from PyPI: its pins, its executable and how it takes a catalog."""

    name: str
    packages: tuple[str, ...]
    executable: str
    catalog_flag: str = "--catalog"

    @property
    def bin(self) -> Path:
        """The tap's executable inside its virtualenv."""
        return VENVS / self.name / "bin" / self.executable


@dataclass(frozen=True)
class Recording:
    """One fixture: a tap run over some streams with its settings, selection and state."""

    fixture: str
    tap: Tap
    config: dict[str, Any]
    streams: tuple[str, ...]
    replication: dict[str, Any] = field(
        default_factory=lambda: {"replication-method": "FULL_TABLE"}
    )
    state: dict[str, Any] | None = None
    batch: bool = False


def uv() -> str:
    """The uv executable: on PATH, or the one `make install` put into .tools/."""
    found = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        raise RuntimeError("uv not found: run `make install` first")
    return found


def install(tap: Tap) -> None:
    """Create or refresh the tap's virtualenv when its pins changed."""
    venv = VENVS / tap.name
    marker = venv / ".installed"
    pins = "\n".join(tap.packages)
    if marker.exists() and marker.read_text() == pins:
        return
    python = subprocess.run(
        [str(ROOT / "scripts" / "find-python.sh"), "3.11", "3.13"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([uv(), "venv", "--quiet", "--python", python, str(venv)], check=True, env=env)
    subprocess.run(
        [uv(), "pip", "install", "--quiet", *tap.packages],
        check=True,
        env={**env, "VIRTUAL_ENV": str(venv)},
    )
    marker.write_text(pins)


def version(tap: Tap) -> str:
    """`name==version` of every pinned package as installed."""
    listed = subprocess.run(
        [uv(), "pip", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "VIRTUAL_ENV": str(VENVS / tap.name)},
    ).stdout
    installed = {p["name"].lower(): p["version"] for p in json.loads(listed)}
    names = [p.split("=")[0].split("<")[0].lower() for p in tap.packages]
    return ", ".join(f"{n}=={installed[n]}" for n in names if n in installed)


def select(catalog: dict[str, Any], streams: tuple[str, ...], replication: dict[str, Any]) -> None:
    """Select `streams` (every property of them) in a discovered catalog, in place."""
    found = {entry["tap_stream_id"] for entry in catalog["streams"]}
    if missing := set(streams) - found:
        raise RuntimeError(f"streams not discovered: {sorted(missing)}")
    for entry in catalog["streams"]:
        chosen = entry["tap_stream_id"] in streams
        for item in entry["metadata"]:
            item["metadata"]["selected"] = chosen
            if chosen and item["breadcrumb"] == []:
                item["metadata"].update(replication)
        if chosen and "replication-key" in replication:
            entry["replication_key"] = replication["replication-key"]
            entry["replication_method"] = replication["replication-method"]


def _run(cmd: list[str], what: str) -> bytes:
    proc = subprocess.run(cmd, capture_output=True, check=False, timeout=600)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.decode(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{what} failed with exit code {proc.returncode}:\n{tail}")
    return proc.stdout


def record(recording: Recording, out_dir: Path) -> Path:
    """Run the tap and write its stdout to `<out_dir>/<fixture>.singer`."""
    tap = recording.tap
    with tempfile.TemporaryDirectory(prefix="tap-fixture-") as tmp:
        work = Path(tmp)
        config = dict(recording.config)
        if recording.batch:
            config["batch_config"] = {
                "encoding": {"format": "jsonl", "compression": "gzip"},
                "storage": {"root": (work / "batches").as_uri(), "prefix": "batch-"},
            }
        config_path = work / "config.json"
        config_path.write_text(json.dumps(config))
        catalog = json.loads(
            _run(
                [str(tap.bin), "--config", str(config_path), "--discover"], f"{tap.name} discovery"
            )
        )
        select(catalog, recording.streams, recording.replication)
        catalog_path = work / "catalog.json"
        catalog_path.write_text(json.dumps(catalog))
        cmd = [str(tap.bin), "--config", str(config_path), tap.catalog_flag, str(catalog_path)]
        if recording.state is not None:
            state_path = work / "state.json"
            state_path.write_text(json.dumps(recording.state))
            cmd += ["--state", str(state_path)]
        output = _run(cmd, f"{tap.name} ({recording.fixture})")
        if recording.batch:
            output = _keep_batch_files(output, work / "batches", out_dir, recording.fixture)
    path = out_dir / f"{recording.fixture}.singer"
    path.write_bytes(output)
    return path


def _keep_batch_files(output: bytes, batch_root: Path, out_dir: Path, fixture: str) -> bytes:
    """Move the tap's batch files next to the fixture; point the manifests at the placeholder."""
    target = out_dir / "batches" / fixture
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    lines = []
    for line in output.splitlines():
        message = json.loads(line)
        if message.get("type") == "BATCH":
            urls = []
            for url in message["manifest"]:
                source = Path(url.removeprefix("file://"))
                shutil.move(source, target / source.name)
                urls.append(f"file://{TAPS_DIR_TOKEN}/batches/{fixture}/{source.name}")
            message["manifest"] = urls
            lines.append(json.dumps(message).encode())
        else:
            lines.append(line)
    if not any(batch_root.glob("*")) and not list(target.iterdir()):
        raise RuntimeError(f"{fixture}: the tap wrote no BATCH files")
    return b"\n".join(lines) + b"\n"
