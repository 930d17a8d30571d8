"""What this run's per-core rate implies for seed 000's 1.4 billion rows on real BigQuery.

Against real BigQuery the loads and MERGEs run in BigQuery and the API serves from its own
machine, so a worker's cost here is its tap and its target only: the CPU seconds per
million records that the benchmark measures for them. One core then moves
1e6 / (CPU s per M) rows/s, and N cores N times that, while the API keeps up. BigQuery's
limits bound the rest: about 1,500 load jobs per table per day (so the batch size sets how
many days of quota a backfill takes), and at most two mutating DML statements (MERGE) run
at once per table, the others queued, so the MERGE queue drains at 2 x batch rows per
MERGE time. That MERGE time is not measured here (the emulator is not BigQuery): the table
shows what a few plausible values would allow.
"""

from __future__ import annotations

from bench.report import Result

SEED_ROWS = 1_400_000_000
LOAD_JOBS_PER_TABLE_PER_DAY = 1_500
CONCURRENT_MERGES_PER_TABLE = 2
WORKERS = (1, 2, 4, 8)
BATCH_ROWS = (500_000, 1_000_000, 5_000_000)
ASSUMED_MERGE_SECONDS = (10, 30, 60)
PIPES = {
    "RECORD": "tap | target-bigquery-lite (RECORD)",
    "BATCH": "tap | target-bigquery-lite (BATCH)",
}


def paper_estimate(results: list[Result]) -> list[str]:
    """Markdown lines: per-core rates, hours per worker count, load-job and MERGE bounds."""
    by_name = {r.name: r for r in results if r.ok}
    per_core = {
        mode: 1e6 / by_name[name].cpu_per_million
        for mode, name in PIPES.items()
        if name in by_name and by_name[name].cpu_per_million > 0
    }
    if not per_core:
        return ["(No tap | target pipe measured in this run: no 1.4-billion-row estimate.)"]
    modes = list(per_core)
    lines = [
        "### Seed 000's 1.4 billion rows on paper, from this run",
        "",
        "Per core (tap + target CPU only; BigQuery and the API do the rest elsewhere): "
        + ", ".join(
            f"{mode} {rate:,.0f} rows/s ({1e6 / rate:.2f} CPU s per million)"
            for mode, rate in per_core.items()
        )
        + ". Hours for 1.4e9 rows = 1.4e9 / (N x per-core rate) / 3600, if the API and "
        "BigQuery keep up:",
        "",
        "| workers (cores) | " + " | ".join(f"{mode} hours" for mode in modes) + " |",
        "|--:|" + "--:|" * len(modes),
    ]
    for workers in WORKERS:
        hours = [SEED_ROWS / (workers * per_core[mode]) / 3600 for mode in modes]
        lines.append(f"| {workers} | " + " | ".join(f"{h:.2f}" for h in hours) + " |")
    fastest = max(per_core.values())
    lines += [
        "",
        f"Load jobs (limit ~{LOAD_JOBS_PER_TABLE_PER_DAY:,} per table per day): jobs = 1.4e9 "
        "/ `batch_max_rows`; at N workers a job is requested every B / (N x rate) seconds "
        f"(rate {fastest:,.0f} rows/s per worker):",
        "",
        "| batch_max_rows (B) | load jobs | days of quota | seconds between jobs, 4 workers | "
        "8 workers |",
        "|--:|--:|--:|--:|--:|",
    ]
    for batch in BATCH_ROWS:
        jobs = SEED_ROWS / batch
        lines.append(
            f"| {batch:,} | {jobs:,.0f} | {jobs / LOAD_JOBS_PER_TABLE_PER_DAY:.2f} | "
            f"{batch / (4 * fastest):.1f} | {batch / (8 * fastest):.1f} |"
        )
    lines += [
        "",
        "MERGE queue: at most "
        f"{CONCURRENT_MERGES_PER_TABLE} MERGEs run at once per table, so rows/s into one table "
        f"<= {CONCURRENT_MERGES_PER_TABLE} x B / (seconds per MERGE), whatever N; workers "
        "beyond that bound only queue. Seconds per MERGE on real BigQuery are not measured "
        "here (assumed values):",
        "",
        "| B | MERGE s (assumed) | rows/s bound | workers it can feed | hours for 1.4e9 |",
        "|--:|--:|--:|--:|--:|",
    ]
    for batch in BATCH_ROWS[1:]:
        for seconds in ASSUMED_MERGE_SECONDS:
            bound = CONCURRENT_MERGES_PER_TABLE * batch / seconds
            lines.append(
                f"| {batch:,} | {seconds} | {bound:,.0f} | {bound / fastest:.1f} | "
                f"{SEED_ROWS / bound / 3600:.1f} |"
            )
    return lines
