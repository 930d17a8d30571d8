"""Start the local BigQuery emulator (local-bigquery in .venv-bq); connect the real client to it."""

from __future__ import annotations

import os
from pathlib import Path

from google.api_core.client_options import ClientOptions
from google.auth import credentials as auth_credentials
from google.cloud import bigquery

from dev_services.process import ROOT, Service, free_port, start_process, wait_until_ready
from dev_services.strict_state import ADMIN_TOKEN

DEFAULT_PROJECT = "flows-local"


def emulator_command() -> str:
    """The local-bigquery executable in the project's .venv-bq."""
    return os.environ.get("BQ_EMULATOR_BIN", str(ROOT / ".venv-bq" / "bin" / "local-bigquery"))


def emulator_home() -> Path:
    """The HOME under which DuckDB finds the extensions installed offline by `make install`."""
    return Path(os.environ.get("BQ_EMULATOR_HOME", ROOT / ".venv-bq" / "home"))


def start_bigquery_emulator(
    data_dir: Path,
    log_path: Path,
    port: int | None = None,
    project: str = DEFAULT_PROJECT,
    storage_emulator: str | None = None,
) -> Service:
    """Run local-bigquery on 127.0.0.1:`port` and return once it lists datasets (HTTP 200).

    With `storage_emulator` (fake-gcs-server's URL) its load jobs read `gs://` URIs there.
    """
    command = emulator_command()
    if not Path(command).exists():
        raise FileNotFoundError(f"BigQuery emulator not installed at {command}: run 'make install'")
    port = port or free_port()
    grpc_port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        command,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--grpc-port",
        str(grpc_port),
        "--project",
        project,
        "--data-dir",
        str(data_dir),
    ]
    env = {"HOME": str(emulator_home())}
    if storage_emulator:
        env["STORAGE_EMULATOR_HOST"] = storage_emulator
    process = start_process("bigquery-emulator", cmd, log_path, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(
        "bigquery-emulator",
        f"{url}/bigquery/v2/projects/{project}/datasets",
        process,
        log_path,
        timeout=90,
    )
    return Service("bigquery-emulator", process.pid, url, log_path, process)


class HarnessCredentials(auth_credentials.Credentials):
    """The test harness's own identity: a fixed bearer token the strict front lets do anything.

    The target itself uses anonymous credentials, which the strict front treats as a
    least-privileged principal; the emulator ignores both.
    """

    def __init__(self) -> None:
        super().__init__()
        self.token = ADMIN_TOKEN

    def refresh(self, request: object) -> None:
        """Nothing to refresh: the token never expires."""


def emulator_client(endpoint: str, project: str = DEFAULT_PROJECT) -> bigquery.Client:
    """A real google-cloud-bigquery client for the harness (admin in the strict front)."""
    return bigquery.Client(
        project=project,
        credentials=HarnessCredentials(),
        client_options=ClientOptions(api_endpoint=endpoint),
    )
