"""The cost report: what each BigQuery job did and billed, and the totals per table.

On-demand pricing bills the bytes a query reads (loads are free), so every job logs its
kind and the figures BigQuery returns for it: bytes processed, bytes billed, slot
milliseconds. A local emulator (`api_endpoint` set) returns none or zeros; the report then
labels its figures as the emulator's (the tests and the benchmark estimate what a MERGE
admits, see `bench/README.md`). One ledger serves both threads' job runners.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

EMULATED = " (as the emulator reports them: it counts no bytes)"

log = logging.getLogger("target_bigquery_lite")


@dataclass
class CostTotals:
    """The jobs run for one table and what BigQuery reported for them."""

    kinds: Counter[str] = field(default_factory=Counter)
    processed: int = 0
    billed: int = 0
    slot_ms: int = 0
    reported: int = 0
    """How many jobs came back with byte counts (zero against the emulator)."""

    def describe(self, emulated: bool = False) -> str:
        """`3 jobs (1 LOAD, 1 MERGE, 1 SELECT), 10.0 MB processed, 10.0 MB billed, 120 slot ms`."""
        jobs = sum(self.kinds.values())
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.kinds.items()))
        figures = (
            f"{_size(self.processed)} processed, {_size(self.billed)} billed, "
            f"{self.slot_ms} slot ms"
            if self.reported
            else "no byte counts returned"
        )
        return f"{jobs} job(s) ({kinds}), {figures}" + (
            EMULATED if emulated and self.reported else ""
        )


class CostLedger:
    """Every job of the run, by table (the label in its step name, see `jobs.step_name`)."""

    def __init__(self, *, emulated: bool = False) -> None:
        """An empty ledger; `emulated`: the jobs run on an emulator (`api_endpoint`)."""
        self.emulated = emulated
        self._lock = threading.Lock()
        self._tables: dict[str, CostTotals] = {}

    def record(self, step: str, job: Any) -> None:
        """Log one finished job's kind and figures, and add them to its table's totals."""
        kind = getattr(job, "statement_type", None) or job.job_type.upper()
        processed = getattr(job, "total_bytes_processed", None)
        billed = getattr(job, "total_bytes_billed", None)
        slot_ms = getattr(job, "slot_millis", None)
        if processed is None and billed is None:
            log.info("job %s: %s (no byte counts returned)", job.job_id, kind)
        else:
            log.info(
                "job %s: %s, %s processed, %s billed, %s slot ms%s",
                job.job_id,
                kind,
                _size(processed or 0),
                _size(billed or 0),
                slot_ms or 0,
                EMULATED if self.emulated else "",
            )
        with self._lock:
            totals = self._tables.setdefault(table_label(step), CostTotals())
            totals.kinds[kind] += 1
            if processed is not None or billed is not None:
                totals.reported += 1
                totals.processed += processed or 0
                totals.billed += billed or 0
                totals.slot_ms += slot_ms or 0

    def summary(self, label: str) -> str | None:
        """The totals of the table with this label (`jobs.object_label`), if it ran jobs."""
        with self._lock:
            totals = self._tables.get(label)
            return totals.describe(self.emulated) if totals is not None else None


def table_label(step: str) -> str:
    """The table label inside a step name `<batch or final>_<label>_<kind>`."""
    inner = step.split("_", 1)[-1]
    return inner.rsplit("_", 1)[0]


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count} B"
