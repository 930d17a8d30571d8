"""`make demo`: the whole story on the local services, checked.

1. start flows-api (on a freshly generated LANL-shaped database of DEMO_ROWS rows) and the
   BigQuery emulator, on free loopback ports, under .run/demo/;
2. backfill with `meltano run tap-flows target-bigquery-lite` and print what BigQuery holds,
   the saved state and the throughput;
3. `flows-api append` DEMO_APPEND_ROWS later rows and run again, incrementally;
4. stop the services it started.

With DEMO_GCS=1 the demo also starts the local Cloud Storage (fake-gcs-server), the target
stages every batch in a bucket and keeps the objects (`gcs_keep_objects`), and after each run
the archive's object count and size are printed and checked against the batches.

Exits non-zero if any figure is wrong: BigQuery must hold exactly the source rows (count,
distinct ids, min/max time, sum of byte_count) and the state must point at the last `time`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dev_services.bigquery_emulator import DEFAULT_PROJECT, emulator_client, start_bigquery_emulator
from dev_services.flows_api import start_flows_api
from dev_services.flows_check import source_figures, table_figures
from dev_services.gcs_server import ensure_bucket, start_gcs_server, storage_client
from dev_services.process import ROOT, Service, ServiceError
from target_bigquery_lite.layout import existing_layout

BIN = Path(sys.executable).parent
DEMO_DIR = ROOT / ".run" / "demo"
DATASET = "flows_demo"
STATE_SUFFIX = "demo"
STATE_ID = f"dev:tap-flows-to-target-bigquery-lite:{STATE_SUFFIX}"
BUCKET = "flows-demo-archive"
GCS_PREFIX = "target-bigquery-lite/"


class DemoError(Exception):
    """A figure did not match, or a step failed."""


def say(text: str) -> None:
    """One line of the demo's story, on stdout."""
    print(text, flush=True)


def meltano(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run meltano in the project, its log kept under .run/demo/."""
    with open(DEMO_DIR / "meltano.log", "a") as log:
        return subprocess.run(
            [str(BIN / "meltano"), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            check=False,
        )


def run_pipeline(label: str, env: dict[str, str], *extra: str) -> float:
    """One `meltano run`; returns its wall time."""
    say(
        f"\n== {label}: meltano run {' '.join(extra)} tap-flows target-bigquery-lite".replace(
            "  ", " "
        )
    )
    started = time.monotonic()
    result = meltano(
        "run",
        *extra,
        "--state-id-suffix",
        STATE_SUFFIX,
        "tap-flows",
        "target-bigquery-lite",
        env=env,
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise DemoError(
            f"meltano run failed (exit {result.returncode}); see {DEMO_DIR / 'meltano.log'}"
        )
    return seconds


def check(
    label: str, db: Path, endpoint: str, env: dict[str, str], *, seconds: float, moved: int
) -> None:
    """Print BigQuery's figures, the state and the throughput; raise if anything is off."""
    client = emulator_client(endpoint, DEFAULT_PROJECT)
    expected, actual = source_figures(db), table_figures(client, f"{DATASET}.flows")
    say(f"   BigQuery {DATASET}.flows: {actual.describe()}")
    layout = existing_layout(client.get_table(f"{DEFAULT_PROJECT}.{DATASET}.flows"))
    partitions = f" ({layout.int_range.partitions:,} partitions)" if layout.int_range else ""
    say(f"   table layout: {layout.describe()}{partitions}")
    say(f"   source database:     {expected.describe()}")
    state_out = meltano("state", "get", STATE_ID, env=env)
    state = json.loads(state_out.stdout or "{}")
    bookmark = (
        state.get("singer_state", {})
        .get("bookmarks", {})
        .get("flows", {})
        .get("replication_key_value")
    )
    say(f"   saved state ({STATE_ID}): {json.dumps(state.get('singer_state'))}")
    say(
        f"   throughput: {moved:,} new rows in {seconds:.1f} s = {moved / seconds:,.0f} rows/s "
        "(the whole `meltano run`, start-up included)"
    )
    if actual != expected:
        raise DemoError(f"{label}: BigQuery does not match the source: {actual} != {expected}")
    if bookmark != expected.max_time:
        raise DemoError(f"{label}: state bookmark {bookmark} != max(time) {expected.max_time}")
    say("   OK: BigQuery holds exactly the source rows; the state points at the last time.")


def check_archive(label: str, gcs_url: str, runs: int, db: Path) -> None:
    """Print the Cloud Storage archive's objects; raise unless every run left its batches."""
    blobs = list(storage_client(gcs_url).list_blobs(BUCKET, prefix=f"{GCS_PREFIX}flows/dt="))
    size = sum(blob.size or 0 for blob in blobs)
    rows = sum(int((blob.metadata or {}).get("bqlite-rows", 0)) for blob in blobs)
    run_ids = {blob.name.rsplit("/", 1)[1].rsplit("-", 2)[0] for blob in blobs}
    say(
        f"   Cloud Storage archive gs://{BUCKET}/{GCS_PREFIX}flows/: {len(blobs):,} objects, "
        f"{size / 1e6:,.1f} MB, {rows:,} rows staged, from {len(run_ids)} run(s)"
    )
    if len(run_ids) != runs:
        raise DemoError(f"{label}: the archive holds objects of {len(run_ids)} runs, not {runs}")
    if rows < source_figures(db).rows:  # inclusive restarts stage boundary rows twice
        raise DemoError(f"{label}: the archive holds {rows:,} rows, fewer than the source")


def main() -> int:
    """Run the demo; 0 when every figure matched."""
    rows = int(os.environ.get("DEMO_ROWS", "1000000"))
    gcs = os.environ.get("DEMO_GCS", "") not in ("", "0")
    append_rows = int(os.environ.get("DEMO_APPEND_ROWS", str(max(1, rows // 20))))
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    db = DEMO_DIR / "flows.db"
    services: list[Service] = []
    try:
        say(f"== generating {rows:,} LANL-shaped flow records into {db.relative_to(ROOT)}")
        subprocess.run(
            [str(BIN / "flows-api"), "generate", "--rows", str(rows), "--db", str(db)],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        say("== starting flows-api and the BigQuery emulator (logs in .run/demo/)")
        api = start_flows_api(db, DEMO_DIR / "flows-api.log")
        services.append(api)
        gcs_url = None
        if gcs:
            store = start_gcs_server(DEMO_DIR / "gcs-data", DEMO_DIR / "gcs-server.log")
            services.append(store)
            gcs_url = store.url
            ensure_bucket(storage_client(gcs_url), BUCKET)
            say(f"   DEMO_GCS=1: Cloud Storage {gcs_url}, batches staged in gs://{BUCKET}")
        bq = start_bigquery_emulator(
            DEMO_DIR / "bq-data", DEMO_DIR / "bigquery-emulator.log", storage_emulator=gcs_url
        )
        services.append(bq)
        say(f"   flows-api {api.url}, BigQuery emulator {bq.url}")
        env = {
            **os.environ,
            "TAP_FLOWS_API_URL": api.url,
            "TARGET_BIGQUERY_LITE_API_ENDPOINT": bq.url,
            "TARGET_BIGQUERY_LITE_PROJECT": DEFAULT_PROJECT,
            "TARGET_BIGQUERY_LITE_DATASET": DATASET,
            "TARGET_BIGQUERY_LITE_STAGING_DIR": str(DEMO_DIR / "staging"),
        }
        if gcs_url:
            env |= {
                "TARGET_BIGQUERY_LITE_GCS_BUCKET": BUCKET,
                "TARGET_BIGQUERY_LITE_GCS_PREFIX": GCS_PREFIX,
                "TARGET_BIGQUERY_LITE_GCS_ENDPOINT": gcs_url,
                "TARGET_BIGQUERY_LITE_GCS_KEEP_OBJECTS": "true",
            }

        seconds = run_pipeline("backfill", env, "--full-refresh")
        check("backfill", db, bq.url, env, seconds=seconds, moved=rows)
        if gcs_url:
            check_archive("backfill", gcs_url, runs=1, db=db)

        say(f"\n== flows-api append --rows {append_rows:,} (new, later rows)")
        subprocess.run(
            [str(BIN / "flows-api"), "append", "--rows", str(append_rows), "--db", str(db)],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        seconds = run_pipeline("incremental run", env)
        check("incremental run", db, bq.url, env, seconds=seconds, moved=append_rows)
        if gcs_url:
            check_archive("incremental run", gcs_url, runs=2, db=db)
        say("\nDemo passed. Next: README.md ('Run it yourself', 'Real BigQuery', 'Scheduling').")
        return 0
    except (DemoError, ServiceError, subprocess.CalledProcessError) as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for service in reversed(services):
            service.stop()
        if services:
            say("== stopped the services the demo started")


if __name__ == "__main__":
    sys.exit(main())
