"""`make demo`'s own checks, on a small DEMO_ROWS (the full size is what `make demo` runs)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_demo_script_passes_its_own_checks_on_a_small_dataset() -> None:
    env = {**os.environ, "DEMO_ROWS": "20000", "DEMO_APPEND_ROWS": "3000"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "BigQuery flows_demo.flows: 20,000 rows, 20,000 distinct ids" in out
    assert "BigQuery flows_demo.flows: 23,000 rows, 23,000 distinct ids" in out
    assert out.count("OK: BigQuery holds exactly the source rows") == 2
    assert "Demo passed" in out
    assert "stopped the services the demo started" in out


def test_demo_with_gcs_staging_archives_every_batch_in_the_bucket() -> None:
    env = {**os.environ, "DEMO_ROWS": "10000", "DEMO_APPEND_ROWS": "2000", "DEMO_GCS": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "batches staged in gs://flows-demo-archive" in out
    archive = "Cloud Storage archive gs://flows-demo-archive/target-bigquery-lite/flows/:"
    assert f"{archive} 1 objects" in out
    assert "10,000 rows staged, from 1 run(s)" in out
    assert f"{archive} 2 objects" in out
    assert "BigQuery flows_demo.flows: 12,000 rows, 12,000 distinct ids" in out
    assert "Demo passed" in out
