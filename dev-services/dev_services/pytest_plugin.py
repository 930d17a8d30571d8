"""Pytest fixtures that start the real local services on free loopback ports.

Loaded automatically (entry point `pytest11`) in the project's .venv. A service that
cannot start fails the test with its log; nothing is skipped silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.cloud import bigquery, storage

from dev_services.bigquery_emulator import DEFAULT_PROJECT, emulator_client, start_bigquery_emulator
from dev_services.flows_api import start_flows_api
from dev_services.gcs_server import (
    delete_bucket,
    start_gcs_server,
    storage_client,
    unique_bucket_name,
)
from dev_services.process import Service


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A local Cloud Storage (fake-gcs-server) for the whole test session."""
    base = tmp_path_factory.mktemp("gcs-server")
    service = start_gcs_server(base / "data", base / "gcs-server.log")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def gcs_client(gcs_server: Service) -> storage.Client:
    """The real google-cloud-storage client, pointed at the session's fake-gcs-server."""
    return storage_client(gcs_server.url, DEFAULT_PROJECT)


@pytest.fixture
def gcs_bucket(gcs_client: storage.Client, request: pytest.FixtureRequest) -> Iterator[str]:
    """A uniquely named, empty bucket, deleted with its objects after the test."""
    name = unique_bucket_name(request.node.name)
    gcs_client.create_bucket(name)
    yield name
    delete_bucket(gcs_client, name)


@pytest.fixture(scope="session")
def bigquery_emulator(
    tmp_path_factory: pytest.TempPathFactory, gcs_server: Service
) -> Iterator[Service]:
    """A BigQuery emulator for the whole test session, reading `gs://` URIs from `gcs_server`."""
    base = tmp_path_factory.mktemp("bigquery-emulator")
    service = start_bigquery_emulator(
        base / "data",
        base / "emulator.log",
        project=DEFAULT_PROJECT,
        storage_emulator=gcs_server.url,
    )
    yield service
    service.stop()


@pytest.fixture(scope="session")
def bq_client(bigquery_emulator: Service) -> bigquery.Client:
    """The real google-cloud-bigquery client, pointed at the session's emulator."""
    return emulator_client(bigquery_emulator.url, DEFAULT_PROJECT)


@pytest.fixture
def restartable_emulator(tmp_path: Path) -> Iterator[Callable[[], Service]]:
    """An emulator of the test's own, to stop: each call starts it (again) on one port and data.

    The first call picks a free port; later calls reuse it, so a client or a running target
    finds the restarted emulator where the old one was, with what was committed before.
    """
    started: list[Service] = []

    def start() -> Service:
        port = int(started[0].url.rsplit(":", 1)[1]) if started else None
        log = tmp_path / f"emulator-{len(started)}.log"
        started.append(start_bigquery_emulator(tmp_path / "bq-data", log, port=port))
        return started[-1]

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def bq_dataset(bq_client: bigquery.Client, request: pytest.FixtureRequest) -> Iterator[str]:
    """A uniquely named, empty dataset, deleted with its tables after the test."""
    name = f"t_{request.node.name[:40]}_{uuid.uuid4().hex[:8]}"
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    bq_client.create_dataset(name)
    yield name
    bq_client.delete_dataset(name, delete_contents=True, not_found_ok=True)


@pytest.fixture
def start_flows_api_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start flows-api processes for a test; all are stopped at its end.

    Call it as `start(db_path, api_key=None, **kwargs)`.
    """
    started: list[Service] = []

    def start(db: Path, api_key: str | None = None, **kwargs: object) -> Service:
        log = tmp_path / f"flows-api-{len(started)}.log"
        service = start_flows_api(db, log, api_key=api_key, **kwargs)  # type: ignore[arg-type]
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
