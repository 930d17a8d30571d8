"""Import the real LANL `flows.txt.gz` into a flows database.

Applies the cleaning rules of the blog post this project grew from: keep only
lines with exactly nine comma-separated fields (`awk -F , 'NF == 9'`) and
number the kept rows from 1 in file order (`awk '{print NR "," $0}'`).
"""

from __future__ import annotations

import gzip
import io
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from flows_api.db import Row, create_index, insert_rows

_INT_FIELDS = (0, 1, 6, 7, 8)
_EXAMPLES = 5


@dataclass
class ImportReport:
    """What an import kept and skipped, for the summary line and the tests."""

    imported: int = 0
    skipped_field_count: int = 0
    skipped_not_integer: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """All skipped lines."""
        return self.skipped_field_count + self.skipped_not_integer


def _rows(lines: Iterator[str], report: ImportReport) -> Iterator[Row]:
    next_id = 1
    for raw in lines:
        line = raw.rstrip("\r\n")
        parts = line.split(",")
        if len(parts) != 9:
            report.skipped_field_count += 1
            if len(report.examples) < _EXAMPLES:
                report.examples.append(line[:120])
            continue
        try:
            time, duration, protocol, packets, size = (int(parts[i]) for i in _INT_FIELDS)
        except ValueError:
            report.skipped_not_integer += 1
            if len(report.examples) < _EXAMPLES:
                report.examples.append(line[:120])
            continue
        yield (
            next_id,
            time,
            duration,
            parts[2],
            parts[3],
            parts[4],
            parts[5],
            protocol,
            packets,
            size,
        )
        report.imported += 1
        next_id += 1


def _open_text(raw: BinaryIO) -> io.TextIOWrapper:
    magic = raw.read(2)
    raw.seek(0)
    binary: BinaryIO = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw
    return io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="")


def import_flows(source: Path, conn: sqlite3.Connection, progress: bool = True) -> ImportReport:
    """Stream `source` (gzip or plain text) into `conn`, never holding the file in memory."""
    report = ImportReport()
    total = source.stat().st_size
    with (
        open(source, "rb") as raw,
        _open_text(raw) as text,
        tqdm(total=total, unit="B", unit_scale=True, desc="import", disable=not progress) as bar,
    ):

        def tracked() -> Iterator[str]:
            done = 0
            for n, line in enumerate(text):
                if n % 65_536 == 0:
                    bar.update(raw.tell() - done)
                    done = raw.tell()
                yield line
            bar.update(total - done)

        insert_rows(conn, _rows(tracked(), report))
    create_index(conn)
    return report
