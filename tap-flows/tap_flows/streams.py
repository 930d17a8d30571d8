"""The tap's streams: declarations only; the HTTP work is in `client.py`."""

from __future__ import annotations

from typing import ClassVar

from singer_sdk import SchemaDirectory

from tap_flows import schemas
from tap_flows.client import FlowsAPIStream

SCHEMAS_DIR = SchemaDirectory(schemas)


class FlowsStream(FlowsAPIStream):
    """Network flows, in `(time, id)` order, incremental on `time`."""

    name = "flows"
    path = "/api/v1/stream/flows.json"
    primary_keys = ("id",)
    replication_key = "time"
    is_sorted = True
    # A lookback re-reads rows older than the bookmark, on purpose: the bookmark must
    # not be checked to only ever grow within a run.
    check_sorted = False
    # Loaded once: a plain dict is read for every record when no catalog is given.
    schema: ClassVar[dict] = SCHEMAS_DIR.get_schema("flows")
