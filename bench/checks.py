"""Row checks: does a destination hold exactly the source rows? A fast run that lost rows fails."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from dev_services.flows_check import Figures


def jsonl_figures(folder: Path) -> Figures:
    """The same figures as `flows_check`, from target-jsonl's output files."""
    ids: set[int] = set()
    rows = total = 0
    low: int | None = None
    high: int | None = None
    for path in folder.glob("flows*.jsonl"):
        with open(path, "rb") as lines:
            for line in lines:
                row = orjson.loads(line)
                rows += 1
                ids.add(row["id"])
                total += row["byte_count"]
                low = row["time"] if low is None else min(low, row["time"])
                high = row["time"] if high is None else max(high, row["time"])
    return Figures(rows, len(ids), low, high, total if rows else None)


def tap_record_count(log: Path) -> int | None:
    """The tap's own `record_count` metric (singer-sdk logs it at the end), from its log."""
    count = None
    for line in log.read_text(errors="replace").splitlines():
        if '"metric":"record_count"' in line:
            count = json.loads(line[line.index("{") :])["value"]
    return count


def compare(actual: Figures, expected: Figures | None) -> tuple[bool, str]:
    """Whether a destination holds exactly the source rows, and a one-line account."""
    if actual == expected:
        return True, f"{actual.rows:,} rows = source"
    return False, f"got {actual.describe()}; source {expected.describe() if expected else '?'}"
