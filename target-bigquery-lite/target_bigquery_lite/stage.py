"""Staging on disk: one NDJSON file per stream per batch, written through a large buffer.

Records never accumulate in memory: each is serialized once and appended to its stream's
file, so memory stays flat however large a batch is. A run works in its own folder under
`staging_dir`, holding a lock on it while it lives (released by the kernel however the
process dies), and removed when the run succeeds.

What failed runs leave behind is bounded: a new run removes the folders of dead runs but the
newest (kept for inspection), a run that fails removes all but its own, a successful run
removes them all (it re-sent their rows), and a run that fails because the disk is full
removes its own files too (they cannot help, and they would keep the disk full). So one
failed run's files stay (two after a SIGKILL). At most `MAX_OPEN_FILES` staging files (or a
quarter of the open-files limit) are open at once: with more streams in one batch the least
recently opened file is closed and reopened for appending when its stream writes again. A
write that fails becomes a `StagingError` naming the file and the real cause, never a bare
OS error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import resource
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from target_bigquery_lite.errors import StagingError
from target_bigquery_lite.partitions import Bounds

WRITE_BUFFER = 1 << 20
MAX_OPEN_FILES = 64
LOCK_FILE = ".lock"
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

log = logging.getLogger("target_bigquery_lite")


@dataclass(frozen=True)
class StagedFile:
    """A closed staging file, ready to load (from `uris` once uploaded to Cloud Storage).

    `bounds`: the partition values its rows span, when its stream tracks them.
    """

    path: Path
    rows: int
    size: int
    uris: tuple[str, ...] = ()
    bounds: Bounds | None = None


class StageWriter:
    """The staging file of one stream for the batch being built.

    `write` is the open file's own method (the hot path); while the file is suspended (see
    `StagingArea`) it is `_resume_and_write`. Callers turn an `OSError` into
    `StagingError.writing(self.path, exc)`.
    """

    def __init__(self, path: Path, area: StagingArea) -> None:
        """Create the file.

        Raises:
            StagingError: when the file cannot be created.
        """
        self.path = path
        self.rows = 0
        self._area = area
        self._size = 0
        self._file: BinaryIO | None = None
        self._open("wb")

    def size(self) -> int:
        """Bytes written so far (buffered ones included)."""
        return self._file.tell() if self._file is not None else self._size

    def close(self) -> StagedFile:
        """Flush and close; the file is complete on disk afterwards.

        Raises:
            StagingError: when the buffered end of the file cannot be written.
        """
        self.suspend()
        self._area.forget(self)
        return StagedFile(self.path, self.rows, self._size)

    def suspend(self) -> None:
        """Close the file for now (flushing it); the next write reopens it for appending.

        Raises:
            StagingError: when the buffered end of the file cannot be written.
        """
        if self._file is None:
            return
        self._size = self._file.tell()
        file, self._file = self._file, None
        self.write = self._resume_and_write
        try:
            file.close()
        except OSError as exc:
            raise StagingError.writing(self.path, exc) from None

    def abandon(self) -> None:
        """Close without caring about the contents (the run is failing; keep the file)."""
        if self._file is not None:
            with contextlib.suppress(OSError):  # the run fails for it already
                self._file.close()  # closes the file even when the final flush fails
            self._file = None
        self._area.forget(self)

    def _resume_and_write(self, data: bytes) -> int:
        self._open("ab")
        return self.write(data)

    def _open(self, mode: str) -> None:
        self._area.opening(self)
        try:
            self._file = open(self.path, mode, buffering=WRITE_BUFFER)  # noqa: SIM115
        except OSError as exc:
            raise StagingError.writing(self.path, exc) from None
        self.write = self._file.write


class StagingArea:
    """The run's folder of staging files, and the clean-up of earlier runs' folders."""

    def __init__(self, root: Path, run_id: str, max_open: int | None = None) -> None:
        """Use `root/run-<run_id>`, created (and locked) on first use.

        At most `max_open` staging files are open at once; by default a quarter of the
        process's open-files limit, and never more than `MAX_OPEN_FILES`.
        """
        self.root = root
        self.folder = root / f"run-{run_id}"
        self.run_id = run_id
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.max_open = max_open or max(2, min(MAX_OPEN_FILES, soft // 4))
        self._lock: int | None = None
        self._opened = 0
        self._open_writers: OrderedDict[int, StageWriter] = OrderedDict()

    def open(self, table: str, batch: int) -> StageWriter:
        """A new staging file for `table` in batch number `batch`.

        Raises:
            StagingError: when the run's folder or the file cannot be created.
        """
        if self._lock is None:
            self._create_folder()
        self._opened += 1  # keeps names unique even when long table names share a prefix
        name = f"{batch:06d}-{self._opened:05d}-{table[:60]}.ndjson"
        return StageWriter(self.folder / name, self)

    def opening(self, writer: StageWriter) -> None:
        """`writer` is about to open its file: close the oldest open one beyond the bound."""
        while len(self._open_writers) >= self.max_open:
            _, oldest = self._open_writers.popitem(last=False)
            oldest.suspend()
        self._open_writers[id(writer)] = writer

    def forget(self, writer: StageWriter) -> None:
        """`writer` closed its file."""
        self._open_writers.pop(id(writer), None)

    @staticmethod
    def remove(staged: StagedFile) -> None:
        """Delete a file whose rows are committed."""
        staged.path.unlink(missing_ok=True)

    def leftovers(self) -> list[Path]:
        """Staging files still on disk (what a failed run keeps for inspection)."""
        if not self.folder.is_dir():
            return []
        return sorted(path for path in self.folder.iterdir() if path.name != LOCK_FILE)

    def after_failure(self, error: BaseException) -> None:
        """After a failed run: keep only its own files (none if the disk is full); say so."""
        self._remove_dead(keep_newest=False)
        if isinstance(error, StagingError) and error.errno in DISK_FULL and self._lock is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            log.error(
                "removed this run's staging folder %s: the disk is full, and its files would "
                "keep it full for the rerun",
                self.folder,
            )

    def clean_up(self) -> None:
        """After a successful run: remove its folder and those of dead runs (now obsolete)."""
        if self._lock is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            os.close(self._lock)
            self._lock = None
        self._remove_dead(keep_newest=False)

    def _create_folder(self) -> None:
        """Create and lock the run's folder atomically (renamed into place already locked)."""
        creating = self.root / f".creating-{self.run_id}"
        try:
            creating.mkdir(parents=True, exist_ok=True)
            lock = os.open(creating / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            creating.rename(self.folder)
        except OSError as exc:
            raise StagingError(
                f"cannot create the staging folder {self.folder}: {exc.strerror or exc} "
                f"(errno {exc.errno}); check the staging_dir setting"
            ) from None
        self._lock = lock
        self._remove_dead(keep_newest=True)

    def _remove_dead(self, *, keep_newest: bool) -> None:
        """Remove the folders of runs that are no longer alive (all, or all but the newest)."""
        dead = sorted(path for path in _run_folders(self.root) if path != self.folder)
        dead = [path for path in dead if not _alive(path)]
        kept = dead[-1:] if keep_newest else []
        removed = [path for path in dead if path not in kept]
        sizes = [_folder_size(path) for path in removed]
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)
        if removed:
            log.info(
                "removed the staging folders of %d earlier failed run(s) (%.1f MiB): %s",
                len(removed),
                sum(sizes) / 2**20,
                ", ".join(path.name for path in removed),
            )
        if kept:
            log.info(
                "keeping the staging folder of the last failed run for inspection: %s (%.1f "
                "MiB; removed by the next successful run)",
                kept[0],
                _folder_size(kept[0]) / 2**20,
            )


def live_runs(root: Path) -> list[Path]:
    """The run folders under `root` whose run is alive (its process holds the folder's lock)."""
    return sorted(path for path in _run_folders(root) if _alive(path))


def _run_folders(root: Path) -> list[Path]:
    try:
        return [path for path in root.iterdir() if path.name.startswith("run-") and path.is_dir()]
    except OSError:
        return []


def _alive(folder: Path) -> bool:
    """Whether a live run holds the folder's lock (folders without one are from dead runs)."""
    try:
        lock = os.open(folder / LOCK_FILE, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(lock)
    return False


def _folder_size(folder: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                total += entry.stat(follow_symlinks=False).st_size
    return total
