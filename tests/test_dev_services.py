"""`dev-services up/down/status` (`make up/down/status`): start all three, stop exactly them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import requests
from dev_services.process import free_port

BIN = Path(sys.executable).parent


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dev-services"), *args], capture_output=True, text=True, env=env, timeout=180
    )


SERVICES = ("flows-api", "gcs-server", "bigquery-emulator")


def test_up_serves_all_three_and_down_stops_them_twice_safely(tmp_path: Path) -> None:
    flows_port, bq_port, gcs_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "DEV_SERVICES_RUN_DIR": str(tmp_path / "run"),
        "FLOWS_DB": str(tmp_path / "f.db"),
        "DEMO_ROWS": "2000",
        "FLOWS_API_PORT": str(flows_port),
        "BQ_EMULATOR_PORT": str(bq_port),
        "GCS_EMULATOR_PORT": str(gcs_port),
        "GCS_BUCKET": "up-test",
    }
    up = run("up", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{flows_port}" in up.stdout
        assert f"http://127.0.0.1:{bq_port}" in up.stdout
        assert f"gs://up-test (STORAGE_EMULATOR_HOST=http://127.0.0.1:{gcs_port})" in up.stdout
        pids = [int((tmp_path / "run" / f"{n}.pid").read_text()) for n in SERVICES]
        rows = requests.get(
            f"http://127.0.0.1:{flows_port}/api/v1/stream/flows.json?limit=3", timeout=10
        )
        assert len(rows.text.splitlines()) == 3
        datasets = requests.get(
            f"http://127.0.0.1:{bq_port}/bigquery/v2/projects/flows-local/datasets", timeout=10
        )
        assert datasets.status_code == 200
        buckets = requests.get(f"http://127.0.0.1:{gcs_port}/storage/v1/b", timeout=10)
        assert [b["name"] for b in buckets.json()["items"]] == ["up-test"]
        assert (tmp_path / "run" / "gcs-data" / "up-test").is_dir()
        status = run("status", env=env)
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("running (pid") == 3
        again = run("up", env=env)
        assert again.stdout.count("already running") == 3
        children = [c.pid for p in pids for c in psutil.Process(p).children(recursive=True)]
    finally:
        down = run("down", env=env)
    assert down.returncode == 0
    assert down.stdout.count("stopped") == 3
    assert not [
        p
        for p in pids + children
        if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
    ]
    second = run("down", env=env)
    assert second.returncode == 0
    assert second.stdout.count("not running") == 3
    after = run("status", env=env)
    assert after.returncode == 1
    assert after.stdout.count("not running") == 3


def test_up_refuses_a_port_taken_by_another_program(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        env = {
            **os.environ,
            "DEV_SERVICES_RUN_DIR": str(tmp_path / "run"),
            "FLOWS_DB": str(tmp_path / "f.db"),
            "DEMO_ROWS": "100",
            "FLOWS_API_PORT": str(taken),
            "BQ_EMULATOR_PORT": str(free_port()),
            "GCS_EMULATOR_PORT": str(free_port()),
        }
        result = run("up", env=env)
        run("down", env=env)
    assert result.returncode == 1
    assert f"port {taken} is already in use" in result.stderr
