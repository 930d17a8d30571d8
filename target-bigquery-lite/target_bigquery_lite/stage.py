"""Staging on disk: one NDJSON file per stream per batch, written through a large buffer.

Records never accumulate in memory: each is serialized once (orjson) and appended to its
stream's file, so memory stays flat however large a batch is, and a failed run leaves the
files behind for inspection. A run works in its own folder under `staging_dir`, removed
when the run succeeds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

WRITE_BUFFER = 1 << 20


@dataclass(frozen=True)
class StagedFile:
    """A closed staging file, ready to load."""

    path: Path
    rows: int
    size: int


class StageWriter:
    """The open staging file of one stream for the batch being built."""

    def __init__(self, path: Path) -> None:
        """Create the file."""
        self.path = path
        self.rows = 0
        self._file: BinaryIO = open(path, "wb", buffering=WRITE_BUFFER)  # noqa: SIM115
        self.write = self._file.write

    def size(self) -> int:
        """Bytes written so far (buffered ones included)."""
        return self._file.tell()

    def close(self) -> StagedFile:
        """Flush and close; the file is complete on disk afterwards."""
        size = self._file.tell()
        self._file.close()
        return StagedFile(self.path, self.rows, size)

    def abandon(self) -> None:
        """Close without caring about the contents (the run is failing; keep the file)."""
        self._file.close()


class StagingArea:
    """The run's folder of staging files."""

    def __init__(self, root: Path, run_id: str) -> None:
        """Use `root/run-<run_id>`, created on first use."""
        self.folder = root / f"run-{run_id}"
        self._created = False
        self._opened = 0

    def open(self, table: str, batch: int) -> StageWriter:
        """A new staging file for `table` in batch number `batch`."""
        if not self._created:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._created = True
        self._opened += 1  # keeps names unique even when long table names share a prefix
        name = f"{batch:06d}-{self._opened:05d}-{table[:120]}.ndjson"
        return StageWriter(self.folder / name)

    @staticmethod
    def remove(staged: StagedFile) -> None:
        """Delete a file whose rows are committed."""
        staged.path.unlink(missing_ok=True)

    def leftovers(self) -> list[Path]:
        """Staging files still on disk (what a failed run keeps for inspection)."""
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.iterdir())

    def clean_up(self) -> None:
        """Remove the run's folder after a successful run."""
        if self._created:
            shutil.rmtree(self.folder, ignore_errors=True)
