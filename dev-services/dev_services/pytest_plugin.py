"""Pytest fixtures that start the real local services on free loopback ports.

Loaded automatically (entry point `pytest11`) in the project's .venv. A service that
cannot start fails the test with its log; nothing is skipped silently.

BigQuery is strict by default: `bigquery_emulator` and `restartable_emulator` hand out
the URL of a `StrictFront` before the emulator, where every SQL statement is analyzed by
ZetaSQL and BigQuery's documented rules are enforced (see `strict_front`). The target's
anonymous requests act with least privilege (BigQuery Data Editor on the dataset, Job
User on the project); the harness's clients (`bq_client`, `emulator_client`) are admins,
and datasets are created by the harness (`bq_dataset`, `create_dataset`). A test that
needs the emulator itself uses `bigquery_emulator.raw_url` (the opt-out; it bypasses every
rule and every check).

Every violation the front records fails the test it happened in, at teardown, listing
requests and messages; a test that provokes one on purpose claims it with
`strict_bigquery.claim(kind)`. The session ends with a summary: statements analyzed,
violations, and the tables with the most table-modifying jobs.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.cloud import bigquery, storage

from dev_services.bigquery_emulator import DEFAULT_PROJECT, emulator_client
from dev_services.flows_api import start_flows_api
from dev_services.gcs_server import (
    delete_bucket,
    start_gcs_server,
    storage_client,
    unique_bucket_name,
)
from dev_services.process import Service
from dev_services.strict_bigquery import (
    HARNESS_LOCATION,
    StrictBigQuery,
    create_dataset,
    start_strict_bigquery,
)
from dev_services.strict_state import STATES, VIOLATIONS, Principal, StrictState, Violation


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
) -> Iterator[StrictBigQuery]:
    """The strict BigQuery (emulator + front) for the whole session; `url` is the front's.

    Its load jobs read `gs://` URIs from `gcs_server`.
    """
    base = tmp_path_factory.mktemp("bigquery-emulator")
    service = start_strict_bigquery(
        base / "data",
        base / "emulator.log",
        project=DEFAULT_PROJECT,
        storage_emulator=gcs_server.url,
    )
    yield service
    service.stop()


@pytest.fixture(scope="session")
def bq_client(bigquery_emulator: StrictBigQuery) -> bigquery.Client:
    """The real google-cloud-bigquery client as the harness's admin, through the strict front."""
    return emulator_client(bigquery_emulator.url, DEFAULT_PROJECT)


@pytest.fixture
def restartable_emulator(tmp_path: Path) -> Iterator[Callable[[], StrictBigQuery]]:
    """A strict BigQuery of the test's own, to stop: each call starts it (again).

    The first call picks a free port for the front; later calls reuse it and the data
    directory, so a client or a running target finds the restarted BigQuery where the old
    one was, with what was committed before (and the front with what it remembered).
    """
    started: list[StrictBigQuery] = []

    def start() -> StrictBigQuery:
        port = int(started[0].url.rsplit(":", 1)[1]) if started else 0
        state = started[0].state if started else None
        log = tmp_path / f"emulator-{len(started)}.log"
        started.append(start_strict_bigquery(tmp_path / "bq-data", log, port=port, state=state))
        return started[-1]

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def bq_dataset(bigquery_emulator: StrictBigQuery, bq_client: bigquery.Client,
               request: pytest.FixtureRequest) -> Iterator[str]:  # fmt: skip
    """A uniquely named, empty dataset (in `HARNESS_LOCATION`), deleted after the test."""
    name = f"t_{request.node.name[:40]}_{uuid.uuid4().hex[:8]}"
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    create_dataset(bigquery_emulator.url, name, location=HARNESS_LOCATION)
    yield name
    bq_client.delete_dataset(name, delete_contents=True, not_found_ok=True)


class StrictMode:
    """A test's handle on the strict BigQuery: its violations, counts and principal."""

    def __init__(self, service: StrictBigQuery, mark: int) -> None:
        self.service = service
        self.mark = mark

    def violations(self, kind: str | None = None) -> list[Violation]:
        """Violations since the test started (of `kind`, if given)."""
        return VIOLATIONS.since(self.mark, kind)

    def claim(self, kind: str | None = None) -> list[Violation]:
        """Take the test's violations (of `kind`) as expected, so they do not fail it."""
        return VIOLATIONS.claim(self.mark, kind)

    def operations(self, table_id: str) -> int:
        """Table-modifying jobs counted for `project.dataset.table` so far."""
        return self.service.state.operations[table_id]

    @contextlib.contextmanager
    def principal(self, principal: Principal) -> Iterator[None]:
        """Let anonymous requests (the target's) act as `principal` inside the block."""
        state = self.service.state
        before, state.principal = state.principal, principal
        try:
            yield
        finally:
            state.principal = before


@pytest.fixture
def strict_bigquery(bigquery_emulator: StrictBigQuery) -> StrictMode:
    """The session's strict BigQuery, seen from this test."""
    return StrictMode(bigquery_emulator, VIOLATIONS.mark())


@pytest.fixture(autouse=True)
def _fail_on_strict_violations() -> Iterator[None]:
    """Fail the test (at teardown) for every violation it caused and did not claim."""
    mark = VIOLATIONS.mark()
    yield
    unclaimed = VIOLATIONS.unclaimed(mark)
    if unclaimed:
        listed = "\n".join(f"  {violation.describe()}" for violation in unclaimed)
        pytest.fail(
            f"strict BigQuery: {len(unclaimed)} request(s) BigQuery would refuse:\n{listed}",
            pytrace=False,
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Statements analyzed, violations, and the busiest tables of the session."""
    if not STATES:
        return
    statements = set().union(*(state.statements for state in STATES))
    operations: Counter[str] = Counter()
    for state in STATES:
        operations.update(state.operations)
    busiest = ", ".join(f"{table} {count}" for table, count in operations.most_common(5))
    terminalreporter.write_sep("-", "strict BigQuery")
    terminalreporter.write_line(
        f"{len(statements)} distinct SQL statements analyzed by ZetaSQL; "
        f"{VIOLATIONS.total()} violations; table operations (BigQuery allows "
        f"{StrictState.daily_table_operations} a table a day), busiest: {busiest or 'none'}"
    )


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
