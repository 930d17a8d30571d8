"""The BigQuery every test gets: the emulator behind a strict front, as one service.

`start_strict_bigquery` starts local-bigquery and a `StrictFront` before it; the returned
service's `url` is the front's (hand it to the target), `raw_url` the emulator's (for the
few tests that must see the emulator itself, e.g. to prove what the front changes).
Stopping the service stops both, so a client sees BigQuery go away; starting it again on
the same `port` with the same `state` brings both back with what the front remembered.

The harness creates datasets itself (`create_dataset`, with its admin client and in
`HARNESS_LOCATION`, a single region so that job lookups need their location), because
the target's principal may not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from google.api_core.exceptions import Conflict
from google.cloud import bigquery

from dev_services.bigquery_emulator import DEFAULT_PROJECT, emulator_client, start_bigquery_emulator
from dev_services.process import Service
from dev_services.strict_front import StrictFront
from dev_services.strict_state import STATES, StrictState

HARNESS_LOCATION = "europe-west2"


@dataclass
class StrictBigQuery(Service):
    """The emulator (`emulator`) behind its strict front (`front`); `url` is the front's."""

    front: StrictFront | None = field(default=None, repr=False)
    emulator: Service | None = field(default=None, repr=False)

    @property
    def raw_url(self) -> str:
        """The emulator's own URL, bypassing every strict rule."""
        assert self.emulator is not None
        return self.emulator.url

    @property
    def state(self) -> StrictState:
        """What the front remembers (principal, counts, locations, ...)."""
        assert self.front is not None
        return self.front.state

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the front, then the emulator."""
        if self.front is not None:
            self.front.stop()
        if self.emulator is not None:
            self.emulator.stop(timeout=timeout)


def start_strict_bigquery(
    data_dir: Path,
    log_path: Path,
    *,
    port: int = 0,
    project: str = DEFAULT_PROJECT,
    state: StrictState | None = None,
    storage_emulator: str | None = None,
) -> StrictBigQuery:
    """Start the emulator on a free port and the strict front on `port` (0: a free one).

    `storage_emulator`: a local Cloud Storage the emulator's load jobs read `gs://` URIs from.
    """
    emulator = start_bigquery_emulator(
        data_dir, log_path, project=project, storage_emulator=storage_emulator
    )
    if state is None:
        state = StrictState(project)
        STATES.append(state)
    front = StrictFront(emulator.url, state)
    try:
        url = front.start(port)
    except OSError:
        emulator.stop()
        raise
    return StrictBigQuery("strict-bigquery", emulator.pid, url, log_path, emulator.process,
                          front=front, emulator=emulator)  # fmt: skip


def create_dataset(
    url: str, dataset: str, *, location: str = HARNESS_LOCATION, project: str = DEFAULT_PROJECT
) -> None:
    """Create a dataset as the harness's admin (an existing one is kept)."""
    client = emulator_client(url, project)
    resource = bigquery.Dataset(f"{project}.{dataset}")
    resource.location = location
    try:
        client.create_dataset(resource)
    except Conflict:
        pass
    finally:
        client.close()
