"""Staging on disk: one NDJSON file per stream per batch, written through a large buffer.

Records never accumulate in memory: each is serialized once (orjson) and appended to its
stream's file, so memory stays flat however large a batch is, and a failed run leaves the
files behind for inspection. A run works in its own folder under `staging_dir`, removed
when the run succeeds. A write that fails (disk full, file size limit, a `staging_dir` that
is not a folder) becomes a `StagingError` naming the file, never a bare OS error.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from target_bigquery_lite.errors import StagingError

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
        """Create the file.

        `write` is the file's own method (the hot path); its callers turn an `OSError` into
        `StagingError.writing(self.path, exc)`.

        Raises:
            StagingError: when the file cannot be created.
        """
        self.path = path
        self.rows = 0
        try:
            self._file: BinaryIO = open(path, "wb", buffering=WRITE_BUFFER)  # noqa: SIM115
        except OSError as exc:
            raise StagingError.writing(path, exc) from None
        self.write = self._file.write

    def size(self) -> int:
        """Bytes written so far (buffered ones included)."""
        return self._file.tell()

    def close(self) -> StagedFile:
        """Flush and close; the file is complete on disk afterwards.

        Raises:
            StagingError: when the buffered end of the file cannot be written.
        """
        size = self._file.tell()
        try:
            self._file.close()
        except OSError as exc:
            raise StagingError.writing(self.path, exc) from None
        return StagedFile(self.path, self.rows, size)

    def abandon(self) -> None:
        """Close without caring about the contents (the run is failing; keep the file)."""
        with contextlib.suppress(OSError):  # an unwritable buffer: the run fails for it already
            self._file.close()  # closes the file even when the final flush fails


class StagingArea:
    """The run's folder of staging files."""

    def __init__(self, root: Path, run_id: str) -> None:
        """Use `root/run-<run_id>`, created on first use."""
        self.folder = root / f"run-{run_id}"
        self._created = False
        self._opened = 0

    def open(self, table: str, batch: int) -> StageWriter:
        """A new staging file for `table` in batch number `batch`.

        Raises:
            StagingError: when the run's folder or the file cannot be created.
        """
        if not self._created:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StagingError(
                    f"cannot create the staging folder {self.folder}: {exc.strerror or exc} "
                    f"(errno {exc.errno}); check the staging_dir setting"
                ) from None
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
