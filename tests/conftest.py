"""Fixtures for the end-to-end tests: generated databases, meltano and pipe runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dev_services.flows_data import generate_db

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
__all__ = ["generate_db"]


def append_rows(path: Path, rows: int) -> None:
    """`flows-api append`: later rows with higher ids."""
    subprocess.run(
        [str(BIN / "flows-api"), "append", "--rows", str(rows), "--db", str(path)],
        check=True,
        capture_output=True,
    )


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value))
    return path


@pytest.fixture
def state_suffix() -> Iterator[str]:
    """A unique meltano `--state-id-suffix`; its state files under .state/ are removed after."""
    suffix = f"test-{uuid.uuid4().hex[:10]}"
    yield suffix
    for path in (ROOT / ".state").glob(f"*:{suffix}"):
        shutil.rmtree(path, ignore_errors=True)


def meltano(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the project's meltano with `env` added to ours."""
    return subprocess.run(
        [str(BIN / "meltano"), *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def saved_state(state_id: str) -> dict:
    """The state Meltano saved under .state/ for `state_id` (its file backend's own file)."""
    stored = json.loads((ROOT / ".state" / state_id / "state.json").read_text())
    return stored["completed"]["singer_state"]


def bookmark(state: dict) -> int:
    return state["bookmarks"]["flows"]["replication_key_value"]


@pytest.fixture(scope="session")
def dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Dagster instance of the session's own ($DAGSTER_HOME), with the project's dagster.yaml."""
    from flows_orchestration.instance import ensure_instance

    home = ensure_instance(tmp_path_factory.mktemp("dagster-home"))
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("DAGSTER_HOME", None)
    else:
        os.environ["DAGSTER_HOME"] = previous
