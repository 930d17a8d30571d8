"""`make bench`: every configuration on the same input, measured in one run.

    .venv/bin/python -m bench.bench --rows 1000000 [--only tap,target,...] [--no-write]

Generates `--rows` LANL-shaped rows once (cached in .run/bench/<rows>/, with a Singer file
recorded from the tap for the target-alone run), starts flows-api and the BigQuery emulator
on free loopback ports, then runs each configuration in turn:

    tap            tap-flows > /dev/null
    target         target-bigquery-lite --input <recorded Singer file>
    gcs            the same, batches staged in Cloud Storage (fake-gcs-server), kept as archive
    record         tap-flows | target-bigquery-lite                 (RECORD messages)
    batch          tap-flows | target-bigquery-lite                 (BATCH messages, plain files)
    jsonl          tap-flows | target-jsonl                          (baseline)
    z3             tap-flows | z3-target-bigquery batch_job, upsert off and on, each cold and
                   with the table already there                      (baseline)
    meltano        meltano run tap-flows target-bigquery-lite
    backfill       the Dagster backfill (flows-orchestration) with 1, 2 and 4 partitions
    cost           an incremental MERGE into a table of all the rows, unfiltered and with
                   merge_partition_filter: the bytes its target side admits (bench/cost.py)

For each: records/s (wall clock, process start to exit), CPU seconds per million records
(user+sys of the tap and the target, from the kernel's rusage of each process), the max RSS
of each process (sampled every 0.1 s), the CPU the services used meanwhile,
and the row check: BigQuery's table (or target-jsonl's file) against the source database
(rows, distinct ids, time range, sum(byte_count)). A run that lost or duplicated rows is
marked FAILED, whatever its speed. Results are prepended to bench/RESULTS.md (newest
first) and plotted in bench/results.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dev_services.bigquery_emulator import DEFAULT_PROJECT, emulator_client, start_bigquery_emulator
from dev_services.flows_api import start_flows_api
from dev_services.flows_check import Figures, source_figures, table_figures
from dev_services.gcs_server import ensure_bucket, start_gcs_server, storage_client
from dev_services.process import ROOT, Service, free_port
from flows_orchestration.server import start_dagster
from google.api_core.exceptions import NotFound

from bench.checks import compare, jsonl_figures, tap_record_count
from bench.cost import run_cost
from bench.paper import paper_estimate
from bench.processes import Stage, TreeSampler, run_pipeline, service_cpu
from bench.report import Result, machine, write_results

BIN = Path(sys.executable).parent
Z3_BIN = ROOT / ".venv-z3" / "bin" / "target-bigquery"
JSONL_BIN = ROOT / ".venv-jsonl" / "bin" / "target-jsonl"
Z3_SHIM = ROOT / "bench" / "z3_shim"
GCS_BUCKET = "bench-archive"
CONFIGS = (
    "tap", "target", "gcs", "record", "batch", "jsonl", "z3", "meltano", "backfill", "cost"
)  # fmt: skip
BATCH_FILE_ROWS = 100_000
Z3_BATCH_ROWS = 100_000
"""z3's `batch_size` (rows per load job). Its default, 500, makes one load job per 500 rows
(~5,000 records/s here); 100,000 is closer to this target's 500,000 and to its best case."""


class Bench:
    """One benchmark run: data, services, configurations, results."""

    def __init__(self, rows: int, only: set[str]) -> None:
        """Use .run/bench/<rows>/ for data (kept) and this run's files (replaced)."""
        self.rows = rows
        self.only = only
        self.home = ROOT / ".run" / "bench" / str(rows)
        self.work = self.home / "run"
        self.db = self.home / "flows.db"
        self.recorded = self.home / "records.singer"
        self.results: list[Result] = []
        self.services: list[Service] = []
        self.api: Service | None = None
        self.bq: Service | None = None
        self.expected: Figures | None = None

    # --- set-up -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Generate the data once per row count; start the services on free ports."""
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir()
        marker = self.home / "flows.db.complete"
        if not marker.exists():
            say(f"generating {self.rows:,} rows into {self.db.relative_to(ROOT)} (once)")
            for stale in (self.db, self.recorded, self.home / "records.complete"):
                stale.unlink(missing_ok=True)
            subprocess.run(
                [
                    str(BIN / "flows-api"),
                    "generate",
                    "--rows",
                    str(self.rows),
                    "--db",
                    str(self.db),
                ],
                check=True,
                stderr=subprocess.DEVNULL,
            )
            marker.touch()
        self.expected = source_figures(self.db)
        say("starting flows-api and the BigQuery emulator (logs in .run/bench/.../run/)")
        self.api = start_flows_api(self.db, self.work / "flows-api.log")
        self.services.append(self.api)
        self.gcs = None
        if "gcs" in self.only:
            self.gcs = start_gcs_server(self.work / "gcs-data", self.work / "gcs-server.log")
            self.services.append(self.gcs)
            ensure_bucket(storage_client(self.gcs.url), GCS_BUCKET)
        self.bq = start_bigquery_emulator(
            self.work / "bq-data",
            self.work / "emulator.log",
            storage_emulator=self.gcs.url if self.gcs else None,
        )
        self.services.append(self.bq)
        self.client = emulator_client(self.bq.url, DEFAULT_PROJECT)
        if not (self.home / "records.complete").exists() and {"target", "gcs", "cost"} & self.only:
            say("recording the tap's Singer output for the target-alone run (once)")
            with open(self.recorded, "wb") as out:
                subprocess.run(
                    [str(BIN / "tap-flows"), "--config", str(self.tap_config())],
                    stdout=out,
                    stderr=subprocess.DEVNULL,
                    check=True,
                )
            (self.home / "records.complete").touch()
        self.warm_up()

    def warm_up(self) -> None:
        """Run 1% of the rows through tap and target, unmeasured, before the measured runs.

        The emulator's first load job and MERGE take about twice as long as later ones
        (measured 2.6 s + 1.7 s against 0.8 s + 0.8 s for 500,000 rows): without this the
        first configuration measured would pay for it.
        """
        assert self.expected is not None
        assert self.expected.min_time is not None
        assert self.expected.max_time is not None
        span = max(1, (self.expected.max_time - self.expected.min_time) // 100)
        tap = self.tap_config(end_time=self.expected.min_time + span)
        say("warming up the emulator (1% of the rows, not measured)")
        run_pipeline(
            [
                Stage("tap", [str(BIN / "tap-flows"), "--config", str(tap)]),
                Stage("target", self.target_argv("bench_warm_up")),
            ],
            self.work / "warm-up.log",
        )
        self.client.delete_dataset("bench_warm_up", delete_contents=True, not_found_ok=True)

    def stop(self) -> None:
        """Stop the services this run started, by PID."""
        for service in reversed(self.services):
            service.stop()

    # --- configurations -------------------------------------------------------------------

    def tap_config(self, **extra: Any) -> Path:
        """A tap config for the bench API."""
        assert self.api is not None
        return self.write(
            f"tap-{len(extra)}-{time.monotonic_ns()}.json", {"api_url": self.api.url, **extra}
        )

    def target_config(self, dataset: str, **extra: Any) -> Path:
        """A target-bigquery-lite config: defaults (validation on, merge on id)."""
        assert self.bq is not None
        settings = {
            "project": DEFAULT_PROJECT,
            "dataset": dataset,
            "api_endpoint": self.bq.url,
            "staging_dir": str(self.work / "staging"),
            "batch_roots": [str(self.work)],
            **extra,
        }
        return self.write(f"target-{dataset}.json", settings)

    def write(self, name: str, value: Any) -> Path:
        """A JSON file in this run's folder."""
        path = self.work / name
        path.write_text(json.dumps(value))
        return path

    def measure(
        self,
        name: str,
        stages: Sequence[Stage],
        check: Callable[[], tuple[bool, str]],
        *,
        note: str = "",
        stdout: Path | None = None,
        group: str = "pipeline",
        runs_of: Service | None = None,
    ) -> Result:
        """Run one configuration and record its figures and its row check.

        `runs_of`: a service whose new processes do the work (Dagster's run workers, with
        their taps and targets); their CPU and memory are sampled and counted too.
        """
        say(f"== {name}")
        log = self.log_path(name)
        cpu_before = service_cpu(self.services)
        sampler = TreeSampler(runs_of) if runs_of is not None else None
        if sampler is not None:
            sampler.start()
        seconds, procs = run_pipeline(stages, log, stdout=stdout)
        if sampler is not None:
            procs += sampler.procs()
        services = service_cpu(self.services) - cpu_before
        failed = [p for p in procs if p.code != 0]
        if failed:
            ok, detail = False, ", ".join(f"{p.name} exit {p.code}" for p in failed) + f" ({log})"
        else:
            ok, detail = check()
        result = Result(
            name=name,
            group=group,
            rows=self.rows,
            seconds=seconds,
            procs={p.name: (p.cpu, p.max_rss_mb) for p in procs},
            services_cpu=services,
            ok=ok,
            check=detail,
            note=note,
        )
        say(f"   {result.summary()}")
        self.results.append(result)
        return result

    def log_path(self, name: str) -> Path:
        """The log of configuration `name` (its processes' stderr)."""
        return self.work / f"{slug(name)}.log"

    def bigquery_check(self, dataset: str, *, drop: bool = True) -> Callable[[], tuple[bool, str]]:
        """The row check of a BigQuery configuration (and the dataset dropped after it)."""

        def check() -> tuple[bool, str]:
            actual = table_figures(self.client, f"{dataset}.flows")
            if drop:
                self.client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
            return compare(actual, self.expected)

        return check

    def run_tap(self) -> None:
        """tap-flows alone, RECORD messages to /dev/null."""
        name = "tap → /dev/null"

        def check() -> tuple[bool, str]:
            count = tap_record_count(self.work / f"{slug(name)}.log")
            return count == self.rows, f"{count:,} records emitted" if count else "no count"

        self.measure(
            name,
            [Stage("tap", [str(BIN / "tap-flows"), "--config", str(self.tap_config())])],
            check,
            group="alone",
        )

    def run_target(self) -> None:
        """target-bigquery-lite alone, from the recorded Singer file."""
        config = self.target_config("bench_target")
        argv = [str(BIN / "target-bigquery-lite"), "--config", str(config)]
        self.measure(
            "target ← Singer file",
            [Stage("target", [*argv, "--input", str(self.recorded)])],
            self.bigquery_check("bench_target"),
            group="alone",
            note="validation on, MERGE on id",
        )

    def run_gcs(self) -> None:
        """target-bigquery-lite alone, from the recorded Singer file, staging in Cloud Storage."""
        assert self.gcs is not None
        config = self.target_config(
            "bench_gcs", gcs_bucket=GCS_BUCKET, gcs_endpoint=self.gcs.url, gcs_keep_objects=True
        )
        argv = [str(BIN / "target-bigquery-lite"), "--config", str(config)]
        self.measure(
            "target ← Singer file, staged in Cloud Storage",
            [Stage("target", [*argv, "--input", str(self.recorded)])],
            self.bigquery_check("bench_gcs"),
            group="alone",
            note="fake-gcs-server; objects kept as the archive; validation on, MERGE on id",
        )

    def run_record(self) -> None:
        """tap | target-bigquery-lite with RECORD messages."""
        self.measure(
            "tap | target-bigquery-lite (RECORD)",
            [
                Stage("tap", [str(BIN / "tap-flows"), "--config", str(self.tap_config())]),
                Stage("target", self.target_argv("bench_record")),
            ],
            self.bigquery_check("bench_record"),
            note="validation on, MERGE on id",
        )

    def run_batch(self) -> None:
        """tap | target-bigquery-lite with BATCH messages (plain JSONL files)."""
        files = self.work / "batches"
        files.mkdir()
        batch_config = {
            "encoding": {"format": "jsonl", "compression": "none"},
            "storage": {"root": files.as_uri()},
            "batch_size": BATCH_FILE_ROWS,
        }
        self.measure(
            "tap | target-bigquery-lite (BATCH)",
            [
                Stage(
                    "tap",
                    [
                        str(BIN / "tap-flows"),
                        "--config",
                        str(self.tap_config(batch_config=batch_config)),
                    ],
                ),
                Stage("target", self.target_argv("bench_batch")),
            ],
            self.bigquery_check("bench_batch"),
            note=f"plain files of {BATCH_FILE_ROWS:,} rows; validation on, MERGE on id",
        )
        shutil.rmtree(files, ignore_errors=True)

    def target_argv(self, dataset: str, **extra: Any) -> list[str]:
        """The target's command line for `dataset` (with settings `extra`)."""
        config = self.target_config(dataset, **extra)
        return [str(BIN / "target-bigquery-lite"), "--config", str(config)]

    def run_jsonl(self) -> None:
        """tap | target-jsonl: the reference every ratio is taken against."""
        out = self.work / "jsonl-out"
        out.mkdir()
        config = self.write("target-jsonl.json", {"destination_path": str(out)})

        def check() -> tuple[bool, str]:
            figures = jsonl_figures(out)
            shutil.rmtree(out, ignore_errors=True)
            return compare(figures, self.expected)

        self.measure(
            "tap | target-jsonl",
            [
                Stage("tap", [str(BIN / "tap-flows"), "--config", str(self.tap_config())]),
                Stage("target", [str(JSONL_BIN), "--config", str(config)]),
            ],
            check,
            note="local files, no validation",
        )

    def run_z3(self) -> None:
        """tap | z3-target-bigquery batch_job: upsert off and on, cold then table existing."""
        assert self.bq is not None
        adc = self.write(
            "z3-adc.json",
            {
                "type": "authorized_user",
                "client_id": "bench",
                "client_secret": "bench",
                "refresh_token": "bench",
                "token": "bench-token",
                "expiry": "2999-01-01T00:00:00Z",
            },
        )
        env = {
            "BIGQUERY_EMULATOR_HOST": self.bq.url,
            "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
            "GOOGLE_CLOUD_PROJECT": DEFAULT_PROJECT,
            "PYTHONPATH": str(Z3_SHIM),
        }
        for upsert in (False, True):
            dataset = f"bench_z3_{'upsert' if upsert else 'append'}"
            config = self.write(
                f"z3-{dataset}.json",
                {
                    "project": DEFAULT_PROJECT,
                    "dataset": dataset,
                    "method": "batch_job",
                    "denormalized": True,
                    "upsert": upsert,
                    "batch_size": Z3_BATCH_ROWS,
                },
            )
            label = f"tap | z3-target-bigquery batch_job, upsert {'on' if upsert else 'off'}"
            for cold in (True, False):
                self.measure(
                    f"{label}, {'cold' if cold else 'table exists'}",
                    [
                        Stage("tap", [str(BIN / "tap-flows"), "--config", str(self.tap_config())]),
                        Stage("target", [str(Z3_BIN), "--config", str(config)], env=env),
                    ],
                    self.bigquery_check(dataset, drop=not cold),
                    note="creates the table, sleeps 5 s" if cold else "table emptied, kept",
                )
                if cold:
                    self.empty_table(f"{dataset}.flows")

    def empty_table(self, table: str) -> None:
        """Delete a table's rows, keeping the table (z3's 'table exists' runs)."""
        try:
            self.client.get_table(table)
        except NotFound:
            return
        self.client.query(f"DELETE FROM `{table}` WHERE TRUE").result()

    def run_meltano(self) -> None:
        """`meltano run tap-flows target-bigquery-lite`: start-up of Meltano included."""
        assert self.api is not None
        assert self.bq is not None
        env = {
            "TAP_FLOWS_API_URL": self.api.url,
            "TARGET_BIGQUERY_LITE_API_ENDPOINT": self.bq.url,
            "TARGET_BIGQUERY_LITE_PROJECT": DEFAULT_PROJECT,
            "TARGET_BIGQUERY_LITE_DATASET": "bench_meltano",
            "TARGET_BIGQUERY_LITE_STAGING_DIR": str(self.work / "staging"),
            "MELTANO_STATE_BACKEND_URI": (self.work / "meltano-state").as_uri(),
        }
        argv = [str(BIN / "meltano"), "run", "--full-refresh", "--state-id-suffix", "bench",
                "tap-flows", "target-bigquery-lite"]  # fmt: skip
        self.measure(
            "meltano run tap-flows target-bigquery-lite",
            [Stage("meltano", argv, env=env, cwd=ROOT)],
            self.bigquery_check("bench_meltano"),
            note="CPU and RSS of meltano with its tap and target",
        )

    def run_backfill(self) -> None:
        """The Dagster backfill with 1, 2 and 4 partitions (RECORD pipes, one table each).

        Each partition count gets its own `dagster dev` (instance, dataset), started before
        the measurement: what is measured is `flows-orchestration backfill` from launch to
        the last partition's end, with the CPU and memory of the runs Dagster starts.
        """
        assert self.expected is not None
        assert self.api is not None
        assert self.bq is not None
        for partitions in (1, 2, 4):
            dataset = f"bench_backfill_{partitions}"
            home = self.work / f"dagster-{partitions}"
            env = {
                "TAP_FLOWS_API_URL": self.api.url,
                "TARGET_BIGQUERY_LITE_API_ENDPOINT": self.bq.url,
                "TARGET_BIGQUERY_LITE_PROJECT": DEFAULT_PROJECT,
                "TARGET_BIGQUERY_LITE_DATASET": dataset,
                "TARGET_BIGQUERY_LITE_STAGING_DIR": str(self.work / "staging"),
                "FLOWS_BACKFILL_STATE_DIR": str(home / "backfill"),
                "DAGSTER_HOME": str(home),
            }
            say(f"starting dagster dev for the {partitions}-partition backfill (not measured)")
            dagster = start_dagster(free_port(), home / "dagster-dev.log", home, env)
            argv = [
                str(BIN / "flows-orchestration"), "backfill", "--url", dagster.url,
                "--partitions", str(partitions),
                "--start-time", str(self.expected.min_time),
                "--end-time", str((self.expected.max_time or 0) + 1),
            ]  # fmt: skip
            try:
                self.measure(
                    f"backfill, {partitions} partition{'s' if partitions > 1 else ''}",
                    [Stage("backfill", argv, env=env, cwd=ROOT)],
                    self.bigquery_check(dataset),
                    group="backfill",
                    note="Dagster backfill; CPU and RSS of its runs (sampled)",
                    runs_of=dagster,
                )
            finally:
                dagster.stop(timeout=30)

    def run(self) -> None:
        """Every configuration asked for, in a fixed order."""
        steps = {
            "tap": self.run_tap,
            "target": self.run_target,
            "record": self.run_record,
            "batch": self.run_batch,
            "jsonl": self.run_jsonl,
            "meltano": self.run_meltano,
            "backfill": self.run_backfill,
            "gcs": self.run_gcs,
            "z3": self.run_z3,
            "cost": lambda: run_cost(self),
        }
        for key, step in steps.items():
            if key in self.only:
                step()


def slug(name: str) -> str:
    """A file-name-safe form of a configuration name."""
    kept = "".join(ch if ch.isalnum() else "-" for ch in name.lower())
    return "-".join(part for part in kept.split("-") if part)


def say(text: str) -> None:
    """Progress on stdout."""
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; non-zero if any configuration failed its row check."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("ROWS", "1000000")))
    parser.add_argument(
        "--only", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)}"
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md/png")
    args = parser.parse_args(argv)
    only = {key.strip() for key in args.only.split(",") if key.strip()}
    unknown = only - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configurations {sorted(unknown)}; choose from {CONFIGS}")
    if "z3" in only and not Z3_BIN.exists():
        parser.error(f"{Z3_BIN} is missing: run bench/install-z3.sh (make bench does)")
    started = datetime.now(UTC)
    host = machine()
    bench = Bench(args.rows, only)
    try:
        bench.prepare()
        bench.run()
    finally:
        bench.stop()
    if not args.no_write:
        paper = paper_estimate(bench.results)
        write_results(bench.results, host, started, args.rows, paper)
        say("wrote bench/RESULTS.md and bench/results.png")
    failed = [r.name for r in bench.results if not r.ok]
    if failed:
        say(f"FAILED runs: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
