"""The benchmark's outputs: a new section on top of bench/RESULTS.md, and bench/results.png.

Past runs stay in RESULTS.md (newest first), so a regression shows next to the run before
it; the plot shows the latest run only.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import psutil
from matplotlib.ticker import FuncFormatter

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
PLOT = HERE / "results.png"
MARKER = "<!-- runs: newest first; bench/bench.py inserts each new run below this line -->"
JSONL = "tap | target-jsonl"


@dataclass
class Result:
    """One configuration's measurements."""

    name: str
    group: str
    rows: int
    seconds: float
    procs: dict[str, tuple[float, float]]
    """Process name -> (user+sys CPU seconds, max RSS in MB)."""
    services_cpu: float
    ok: bool
    check: str
    note: str = ""

    @property
    def rate(self) -> float:
        """Records per second, wall clock from the first process start to the last exit."""
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_million(self) -> float:
        """User+sys CPU seconds of the measured processes (tap, target) per million records."""
        return sum(cpu for cpu, _ in self.procs.values()) / self.rows * 1e6

    def rss(self, process: str) -> float | None:
        """Max RSS of one process (MB), if it took part."""
        return self.procs[process][1] if process in self.procs else None

    def rss_text(self) -> str:
        """`tap 64 / target 93` (MB)."""
        return " / ".join(f"{name} {rss:.0f}" for name, (_, rss) in self.procs.items())

    def summary(self) -> str:
        """One line for the console."""
        status = "ok" if self.ok else "FAILED"
        return (
            f"{self.rate:,.0f} records/s in {self.seconds:.1f} s, "
            f"{self.cpu_per_million:.2f} CPU s/M, RSS MB {self.rss_text()}; "
            f"rows {status}: {self.check}"
        )


@dataclass(frozen=True)
class Goal:
    """A performance goal from the design, checked against one configuration."""

    text: str
    config: str
    threshold: float
    kind: str  # "rate" (at least) or an RSS process name (at most, MB)


GOALS = (
    Goal("tap alone >= 120,000 records/s", "tap → /dev/null", 120_000, "rate"),
    Goal("target alone >= 150,000 records/s", "target ← Singer file", 150_000, "rate"),
    Goal("tap | target RECORD >= 100,000 records/s", "tap | target-bigquery-lite (RECORD)",
         100_000, "rate"),
    Goal("tap | target BATCH >= 150,000 records/s", "tap | target-bigquery-lite (BATCH)",
         150_000, "rate"),
    Goal("tap < 100 MB RSS", "tap | target-bigquery-lite (RECORD)", 100, "tap"),
    Goal("target < 150 MB RSS", "tap | target-bigquery-lite (RECORD)", 150, "target"),
)  # fmt: skip


def goal_lines(results: list[Result], rows: int) -> list[str]:
    """Each goal as met or missed with the measured value (or not measured)."""
    by_name = {r.name: r for r in results}
    lines = []
    for goal in GOALS:
        result = by_name.get(goal.config)
        if result is None:
            lines.append(f"- {goal.text}: not measured in this run")
            continue
        if goal.kind == "rate":
            met, shown = result.rate >= goal.threshold, f"{result.rate:,.0f}/s"
        else:
            rss = result.rss(goal.kind) or 0.0
            met, shown = rss < goal.threshold, f"{rss:.0f} MB"
        verdict = "met" if met and result.ok else "MISSED" if result.ok else "FAILED (rows)"
        scale = "" if goal.kind == "rate" or rows >= 10_000_000 else " (the goal is at 10M rows)"
        lines.append(f"- {goal.text}: **{verdict}**, {shown}{scale}")
    return lines


def results_table(results: list[Result]) -> list[str]:
    """The markdown table of one run, ratios against target-jsonl."""
    reference = next((r for r in results if r.name == JSONL), None)
    lines = [
        "| configuration | records/s | vs target-jsonl | wall s | CPU s / M records | "
        "max RSS MB | services CPU s | rows check | notes |",
        "|---|--:|--:|--:|--:|---|--:|---|---|",
    ]
    for r in results:
        ratio = f"{r.rate / reference.rate:.1f}x" if reference and reference.rate else "—"
        check = r.check if r.ok else f"**FAILED**: {r.check}"
        lines.append(
            f"| {cell(r.name)} | {r.rate:,.0f} | {ratio} | {r.seconds:.1f} | "
            f"{r.cpu_per_million:.2f} | {r.rss_text()} | {r.services_cpu:.1f} | {check} | "
            f"{cell(r.note)} |"
        )
    return lines


def cell(text: str) -> str:
    """Text for a markdown table cell (configuration names hold pipes)."""
    return text.replace("|", "\\|")


def section(
    results: list[Result], host: dict[str, str], started: datetime, rows: int, paper: list[str]
) -> str:
    """The markdown of one run."""
    head = [
        f"## {started:%Y-%m-%d %H:%M} UTC, {rows:,} rows",
        "",
        f"Machine: {host['cores']} cores ({host['cpu']}), {host['memory']}, {host['os']}; "
        f"Python {host['python']}, singer-sdk {host['singer_sdk']}; "
        f"load average at start {host['load']}.",
        "",
    ]
    return "\n".join(
        [*head, *results_table(results), "", "Goals:", "", *goal_lines(results, rows), "",
         *paper, "", "![results](results.png)", "", ""]
    )  # fmt: skip


def write_results(
    results: list[Result], host: dict[str, str], started: datetime, rows: int, paper: list[str]
) -> None:
    """Insert this run at the top of RESULTS.md's runs and redraw results.png."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if MARKER not in text:
        text = f"# Benchmark results\n\n{MARKER}\n"
    top, rest = text.split(MARKER, 1)
    RESULTS.write_text(
        f"{top}{MARKER}\n\n{section(results, host, started, rows, paper)}{rest.lstrip()}"
    )
    plot(results, started, rows)


def plot(results: list[Result], started: datetime, rows: int) -> None:
    """Records/s and max RSS per configuration, failed runs in red."""
    names = [r.name for r in results][::-1]
    ordered = results[::-1]
    figure, (speed, memory) = plt.subplots(
        1, 2, figsize=(14, 1.0 + 0.45 * len(results)), sharey=True, width_ratios=(3, 2)
    )
    colours = ["tab:blue" if r.ok else "tab:red" for r in ordered]
    speed.barh(names, [r.rate for r in ordered], color=colours)
    for y, r in enumerate(ordered):
        label = f" {r.rate:,.0f}" + ("" if r.ok else "  FAILED: rows")
        speed.text(r.rate, y, label, va="center", fontsize=8)
    speed.set_xlabel("records/s (wall clock)")
    speed.set_title(f"{rows:,} rows, {started:%Y-%m-%d}")
    height = 0.4
    taps = [r.rss("tap") or 0 for r in ordered]
    others = [
        max((rss for n, (_, rss) in r.procs.items() if n != "tap"), default=0) for r in ordered
    ]
    positions = range(len(ordered))
    memory.barh([p + height / 2 for p in positions], taps, height, label="tap", color="tab:green")
    below = [p - height / 2 for p in positions]
    memory.barh(below, others, height, label="target (else largest)", color="tab:orange")
    memory.set_xlabel("max RSS (MB)")
    memory.legend(loc="upper right", fontsize=8)
    for axis in (speed.xaxis, memory.xaxis):
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)
    plt.close(figure)


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "singer_sdk": metadata.version("singer-sdk"),
        "load": f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}",
    }
