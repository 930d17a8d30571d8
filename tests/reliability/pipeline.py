"""Run the real pipeline as users do, find its processes, and judge what a run left behind.

A `Lane` is one way of running `tap-flows | target-bigquery-lite` into one dataset with its
own saved state:

* `pipe`: `scripts/run-pipe.sh`, which replaces its state file only when the target exits 0.
  The target is wrapped so that every STATE line it prints is also appended to a log: that
  log is the `> state-out.jsonl` of the pipe-mode contract, whose last line a user would
  keep, so it must never be ahead of the data either;
* `meltano`: `meltano run --state-id-suffix ...`, which saves each STATE line the target
  prints into `.state/` as it arrives.

Either may stage its batches in Cloud Storage (`CloudStaging`: the target's `gcs_*`
settings, against fake-gcs-server or a proxy in front of it).

The judgement is the correctness promise itself. `check_state` asks, right after a run was
killed, whether the saved state points past the committed data: its bookmark must be at most
`max(time)` in the table, and every source row with `time < bookmark` must be in the table
(the stronger check: a state emitted one batch early passes the first and fails the second).
`verify_exact` asks, after a run to success, whether the table holds exactly the source rows.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from dev_services.flows_check import (
    Figures,
    source_figures,
    source_rows,
    table_figures,
    table_rows,
)
from dev_services.process import stop_pid
from dev_services.strict_bigquery import create_dataset
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
PROJECT = "flows-local"
STATE_ROOT = ROOT / ".state"
RUN_TIMEOUT = 300.0


@dataclass(frozen=True)
class Sizes:
    """Small pages and batches: many STATE messages, many commits, many moments to die in."""

    page_size: int = 2_500
    batch_max_rows: int = 3_000


@dataclass(frozen=True)
class CloudStaging:
    """A lane's Cloud Storage staging: the target's `gcs_bucket`, `gcs_prefix` and so on."""

    bucket: str
    keep_objects: bool
    prefix: str = "kill-loop/"

    def target_settings(self, endpoint: str) -> dict[str, object]:
        """The target's settings for staging through `endpoint` (fake-gcs-server or a proxy)."""
        return {
            "gcs_bucket": self.bucket,
            "gcs_prefix": self.prefix,
            "gcs_keep_objects": self.keep_objects,
            "gcs_endpoint": endpoint,
        }


def bookmark_of(state: Mapping[str, Any] | None) -> int | None:
    """The `flows` bookmark of a Singer state, if it has one."""
    if not state:
        return None
    value = state.get("bookmarks", {}).get("flows", {}).get("replication_key_value")
    return int(value) if value is not None else None


class Lane:
    """One way of running the pipeline (pipe or meltano) into one dataset, with its own state."""

    def __init__(
        self,
        mode: str,
        workdir: Path,
        dataset: str,
        sizes: Sizes,
        *,
        tap_command: Path | None = None,
        target_command: Path | None = None,
        name: str | None = None,
        gcs: CloudStaging | None = None,
        target_settings: dict[str, object] | None = None,
    ) -> None:
        """Prepare the lane's folder; nothing runs yet.

        Args:
            mode: `pipe` or `meltano`.
            workdir: A folder of its own for configs, state, logs and staging files.
            dataset: The BigQuery dataset it loads (created by the harness before the first
                run: the target's least-privileged principal may not create datasets).
            sizes: Page and batch sizes.
            tap_command: Pipe mode only: another tap executable (a mutant, for the tests
                that prove the checks can fail).
            target_command: Pipe mode only: another target executable, likewise.
            name: What the loop calls the lane (default: its mode).
            gcs: Stage the target's batches in Cloud Storage.
            target_settings: More target settings (e.g. `load_method`), in either mode.
        """
        if mode not in ("pipe", "meltano"):
            raise ValueError(f"unknown lane mode {mode!r}")
        self.mode = mode
        self.name = name or mode
        self.gcs = gcs
        self.workdir = workdir
        self.dataset = dataset
        self.sizes = sizes
        self.tap_command = tap_command or BIN / "tap-flows"
        self.target_command = target_command or BIN / "target-bigquery-lite"
        self.suffix = f"kill-{dataset.replace('_', '-')}"
        self.staging_dir = workdir / "staging"
        self.tap_settings: dict[str, object] = {}
        self.target_settings: dict[str, object] = dict(target_settings or {})
        self.state_file = workdir / "state.json"
        # Meltano keeps each plugin's config, catalog and state files in .meltano/run/<plugin>,
        # shared by every run in the project: a concurrent run elsewhere (another test, a
        # developer) can overwrite them mid-run. This lane's runs get their own copy of that
        # folder (MELTANO_SYS_DIR_ROOT), with the project's installed plugins linked in.
        self.meltano_sys_dir = workdir / "meltano-sys"
        self.printed_log = workdir / "printed-states.jsonl"
        self.runs = 0
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def table(self) -> str:
        """`dataset.flows`, as the checks name it."""
        return f"{self.dataset}.flows"

    @property
    def state_id(self) -> str:
        """Meltano's state id for this lane."""
        return f"dev:tap-flows-to-target-bigquery-lite:{self.suffix}"

    def start(
        self,
        api_url: str,
        bq_url: str,
        *,
        gcs_url: str | None = None,
        max_retries: int = 2,
        preexec: Callable[[], None] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start one run in its own session, output to `run-NNN.log`; return at once.

        Args:
            api_url: Where the tap finds flows-api (or a proxy in front of it).
            bq_url: Where the target finds BigQuery (or a proxy in front of it).
            gcs_url: Where the target finds Cloud Storage (lanes with `gcs` only).
            max_retries: The target's retries of transient BigQuery errors; small, so a run
                whose requests are dropped by a stopped proxy ends quickly.
            preexec: Run in the child before it starts (e.g. to set a resource limit that
                the whole run inherits).
        """
        if self.runs == 0:
            create_dataset(bq_url, self.dataset)
        if (self.gcs is None) != (gcs_url is None):
            raise ValueError(f"lane {self.name}: gcs_url goes with, and only with, CloudStaging")
        staging = self.gcs.target_settings(gcs_url) if self.gcs and gcs_url else {}
        settings = staging | self.target_settings
        self.runs += 1
        log = self.workdir / f"run-{self.runs:03d}.log"
        if self.mode == "pipe":
            cmd = self._pipe_command(api_url, bq_url, max_retries, settings)
            env, cwd = {}, None
        else:
            cmd = [str(BIN / "meltano"), "run", "--state-id-suffix", self.suffix]
            cmd += ["tap-flows", "target-bigquery-lite"]
            env = {
                "TAP_FLOWS_API_URL": api_url,
                "TAP_FLOWS_PAGE_SIZE": str(self.sizes.page_size),
                "TARGET_BIGQUERY_LITE_API_ENDPOINT": bq_url,
                "TARGET_BIGQUERY_LITE_DATASET": self.dataset,
                "TARGET_BIGQUERY_LITE_BATCH_MAX_ROWS": str(self.sizes.batch_max_rows),
                "TARGET_BIGQUERY_LITE_STAGING_DIR": str(self.staging_dir),
                "TARGET_BIGQUERY_LITE_MAX_RETRIES": str(max_retries),
            }
            env |= {f"TARGET_BIGQUERY_LITE_{k.upper()}": json.dumps(v) if isinstance(v, bool)
                    else str(v) for k, v in settings.items()}  # fmt: skip
            env |= {f"TAP_FLOWS_{k.upper()}": str(v) for k, v in self.tap_settings.items()}
            env["MELTANO_SYS_DIR_ROOT"] = str(self._private_meltano_sys_dir())
            cwd = ROOT
        with log.open("wb") as out:
            return subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env={**os.environ, **env},
                start_new_session=True,
                preexec_fn=preexec,  # noqa: PLW1509 - only resource limits, no threads touched
            )

    def _private_meltano_sys_dir(self) -> Path:
        if not self.meltano_sys_dir.exists():
            self.meltano_sys_dir.mkdir(parents=True)
            for plugins in ("extractors", "loaders"):
                (self.meltano_sys_dir / plugins).symlink_to(ROOT / ".meltano" / plugins)
        return self.meltano_sys_dir

    def _pipe_command(
        self, api_url: str, bq_url: str, retries: int, settings: dict[str, object]
    ) -> list[str]:
        tap_config = self.workdir / "tap.json"
        tap = {"api_url": api_url, "page_size": self.sizes.page_size, **self.tap_settings}
        tap_config.write_text(json.dumps(tap))
        target_config = self.workdir / "target.json"
        target_config.write_text(
            json.dumps(
                {
                    "project": PROJECT,
                    "dataset": self.dataset,
                    "api_endpoint": bq_url,
                    "batch_max_rows": self.sizes.batch_max_rows,
                    "staging_dir": str(self.staging_dir),
                    "max_retries": retries,
                    **settings,
                }
            )
        )
        wrapper = self.workdir / "target-printing-states.sh"
        wrapper.write_text(
            "#!/usr/bin/env bash\n"
            "# The target, with each STATE line it prints also kept in a log (the pipe-mode\n"
            "# contract's `> state-out.jsonl`); exits with the target's code.\n"
            "set -o pipefail\n"
            f'"{self.target_command}" "$@" | tee -a "{self.printed_log}"\n'
        )
        wrapper.chmod(0o755)
        return [
            str(ROOT / "scripts" / "run-pipe.sh"),
            "--tap-config", str(tap_config),
            "--target-config", str(target_config),
            "--state", str(self.state_file),
            "--tap", str(self.tap_command),
            "--target", str(wrapper),
        ]  # fmt: skip

    def log_of_last_run(self) -> Path:
        """The combined output of the latest run."""
        return self.workdir / f"run-{self.runs:03d}.log"

    def saved_state(self) -> dict[str, Any] | None:
        """The state the next run will start from (run-pipe's file, or Meltano's state)."""
        if self.mode == "pipe":
            text = self.state_file.read_text() if self.state_file.exists() else ""
            return json.loads(text) if text.strip() else None
        path = STATE_ROOT / self.state_id / "state.json"
        if not path.exists():
            return None
        stored = json.loads(path.read_text())
        merged = deep_merge(stored.get("completed") or {}, stored.get("partial") or {})
        return merged.get("singer_state")

    def printed_state(self) -> dict[str, Any] | None:
        """The newest STATE the target printed in any run (pipe mode; Meltano saves each one)."""
        if self.mode == "meltano" or not self.printed_log.exists():
            return self.saved_state()
        text = self.printed_log.read_text()
        complete = text[: text.rfind("\n") + 1]  # a line cut short by a kill is no state
        lines = [line for line in complete.splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None

    def states_to_check(self) -> dict[str, dict[str, Any] | None]:
        """Every state a user could resume from, by where it is kept."""
        if self.mode == "meltano":
            return {"meltano state": self.saved_state()}
        return {"state file": self.saved_state(), "printed state": self.printed_state()}

    def remove_saved_state(self) -> None:
        """Delete Meltano's state folder for this lane (the pipe lane's lives in `workdir`)."""
        if self.mode == "meltano":
            shutil.rmtree(STATE_ROOT / self.state_id, ignore_errors=True)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` merged onto `base`, nested dicts key by key: how Meltano reads its state."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def pipeline_processes(run: subprocess.Popen[bytes]) -> dict[str, psutil.Process]:
    """The tap and target processes of a run (by their executables' names), if they exist.

    Meltano also starts `tap-flows --discover` before the run; that one is not the tap.
    """
    found: dict[str, psutil.Process] = {}
    try:
        children = psutil.Process(run.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return found
    for child in children:
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if len(cmd) < 2 or "python" not in Path(cmd[0]).name or "--discover" in cmd:
            continue
        name = Path(cmd[1]).name
        if name == "tap-flows":
            found["tap"] = child
        elif name == "target-bigquery-lite":
            found["target"] = child
    return found


def kill(victims: Mapping[str, psutil.Process]) -> list[str]:
    """SIGKILL each victim by PID; return the names of those that were still alive."""
    killed = []
    for name, process in victims.items():
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.append(name)
    return killed


def wait_for_exit(run: subprocess.Popen[bytes], timeout: float = RUN_TIMEOUT) -> int | None:
    """The run's exit code, or None if it did not end in time (then it is stopped)."""
    try:
        return run.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_pid(run.pid, timeout=5)
        run.wait(timeout=30)
        return None


@dataclass(frozen=True)
class StateCheck:
    """A saved state against the table: is it at or behind the committed data?"""

    where: str
    bookmark: int | None
    table_max_time: int | None
    source_rows_below: int
    table_ids_below: int
    duplicates: int

    @property
    def missing_below(self) -> int:
        """Source rows with `time < bookmark` that the table lacks."""
        return self.source_rows_below - self.table_ids_below

    @property
    def ahead(self) -> bool:
        """Whether a run resuming from this state could skip rows."""
        if self.bookmark is None:
            return False
        past_max = self.table_max_time is None or self.bookmark > self.table_max_time
        return past_max or self.missing_below > 0

    def describe(self) -> str:
        """One line for logs and failure messages."""
        return (
            f"{self.where}: bookmark {self.bookmark}, table max(time) {self.table_max_time}, "
            f"{self.missing_below} source rows below the bookmark missing, "
            f"{self.duplicates} duplicates"
        )


_STATE_SQL = (
    "SELECT count(*) AS n, count(DISTINCT id) AS ids, max(time) AS max_time, "
    "count(DISTINCT CASE WHEN time < @bookmark THEN id END) AS ids_below FROM `{table}`"
)


def check_state(
    db: Path, client: bigquery.Client, table: str, where: str, state: dict[str, Any] | None
) -> StateCheck:
    """Judge one saved state against the table and the source (read the state first).

    The table can only gain rows after the state was read (a killed run's last MERGE may
    still finish), so reading the state before the table never blames a correct target.
    """
    bookmark = bookmark_of(state)
    probe = bookmark if bookmark is not None else -1
    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("bookmark", "INT64", probe)]
    )
    try:
        client.get_table(table)
    except NotFound:  # the first run died before the target created it
        rows = ids = ids_below = 0
        max_time = None
    else:
        row = next(iter(client.query(_STATE_SQL.format(table=table), job_config=config).result()))
        rows, ids, max_time, ids_below = row["n"], row["ids"], row["max_time"], row["ids_below"]
    with closing(sqlite3.connect(db)) as conn:
        below = conn.execute("SELECT count(*) FROM flows WHERE time < ?", (probe,)).fetchone()[0]
    return StateCheck(where, bookmark, max_time, below, ids_below, rows - ids)


@dataclass
class Verdict:
    """A table after a run to success, against the whole source."""

    source: Figures
    table: Figures
    lost: int
    duplicated: int
    foreign: int
    mismatched: list[int] = field(default_factory=list)
    sampled: int = 0

    @property
    def exact(self) -> bool:
        """Exactly the source rows: same figures, and every sampled row equal in every column."""
        return self.source == self.table and not (self.lost or self.duplicated or self.mismatched)

    def describe(self) -> str:
        """One line for logs and failure messages."""
        return (
            f"source {self.source.describe()}; table {self.table.describe()}; lost {self.lost}, "
            f"duplicated {self.duplicated}, not in the source {self.foreign}, "
            f"{len(self.mismatched)} of {self.sampled} sampled rows differ {self.mismatched[:5]}"
        )


def verify_exact(
    db: Path, client: bigquery.Client, table: str, sample_ids: Sequence[int]
) -> Verdict:
    """Compare the table with the source: figures, and all ten columns of the sampled ids.

    When the figures differ, every id is compared to count exactly what was lost or added.
    """
    source, got = source_figures(db), table_figures(client, table)
    duplicated = got.rows - got.distinct_ids
    lost = foreign = 0
    if source != got:
        with closing(sqlite3.connect(db)) as conn:
            source_ids = {row[0] for row in conn.execute("SELECT id FROM flows")}
        table_ids = {row[0] for row in client.query(f"SELECT id FROM `{table}`").result()}
        lost, foreign = len(source_ids - table_ids), len(table_ids - source_ids)
    ids = sorted(set(sample_ids))
    expected = source_rows(db, ids) if ids else {}
    loaded = table_rows(client, table, ids) if ids else {}
    mismatched = [i for i in ids if expected.get(i) != loaded.get(i)]
    return Verdict(source, got, lost, duplicated, foreign, mismatched, len(ids))


def sample_ids(
    db: Path, rng: random.Random, bookmarks: Sequence[int], size: int = 150
) -> list[int]:
    """Random ids, plus ids at every bookmark seen: the rows a boundary bug would hurt first."""
    with closing(sqlite3.connect(db)) as conn:
        max_id = conn.execute("SELECT max(id) FROM flows").fetchone()[0] or 0
        boundary = [
            row[0]
            for time_ in sorted(set(bookmarks))[-50:]
            for row in conn.execute("SELECT id FROM flows WHERE time = ? LIMIT 20", (time_,))
        ]
    return sorted({rng.randint(1, max_id) for _ in range(size)} | set(boundary)) if max_id else []


def rows_from(db: Path, bookmark: int | None) -> int:
    """Source rows a run resuming from `bookmark` will read (inclusive restart)."""
    with closing(sqlite3.connect(db)) as conn:
        if bookmark is None:
            return conn.execute("SELECT count(*) FROM flows").fetchone()[0]
        return conn.execute("SELECT count(*) FROM flows WHERE time >= ?", (bookmark,)).fetchone()[0]


def grow_source(db: Path, rng: random.Random, rows: int) -> tuple[int, int]:
    """Add rows the way a live source does; return (late rows, appended rows).

    First a few rows that arrive late at the newest `time` already extracted: the inclusive
    restart (`time >= bookmark`) must pick them up, an exclusive one would lose them. Then
    `flows-api append` adds later rows.
    """
    from flows_api.db import connect_writable, insert_rows, last_position
    from flows_api.generate import generate_rows

    late = rng.randint(1, 25)
    conn = connect_writable(db)
    try:
        position = last_position(conn)
        assert position is not None, f"{db} holds no rows"
        start_time, last_id = position
        newest = conn.execute("SELECT max(id) FROM flows").fetchone()[0]
        rows_at_time = generate_rows(late, start_time=start_time, start_id=newest + 1, seed=last_id)
        insert_rows(conn, ((i, start_time, *rest) for i, _, *rest in rows_at_time))
        conn.commit()
    finally:
        conn.close()
    subprocess.run(
        [str(BIN / "flows-api"), "append", "--rows", str(rows), "--db", str(db)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return late, rows


def wait_until(condition: Callable[[], object], timeout: float, *, poll: float = 0.01) -> bool:
    """Poll `condition()` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True
