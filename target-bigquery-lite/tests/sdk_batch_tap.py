"""A minimal singer-sdk tap for the BATCH tests: the same records as RECORD or BATCH messages.

Run as `python sdk_batch_tap.py --config CONFIG`; with `batch_config` in the config the SDK
writes its own jsonl(.gz) batch files and BATCH messages instead of RECORD messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

PEOPLE = 25


class PeopleStream(Stream):
    """Twenty-five people, then person 3 again with a new name (the latest must win)."""

    name = "people"
    primary_keys = ("id",)
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("name", th.StringType),
        th.Property("tags", th.ArrayType(th.StringType)),
        th.Property("address", th.ObjectType(th.Property("city", th.StringType))),
    ).to_dict()

    def get_records(self, context: Any) -> Iterable[dict[str, Any]]:
        for i in range(1, PEOPLE + 1):
            yield {
                "id": i,
                "name": f"person {i}",
                "tags": [f"t{i % 3}"],
                "address": {"city": "Oslo"},
            }
        yield {"id": 3, "name": "person 3, renamed", "tags": [], "address": {"city": "Bergen"}}


class TapPeople(Tap):
    """The tap."""

    name = "tap-people"
    config_jsonschema = th.PropertiesList().to_dict()

    def discover_streams(self) -> list[Stream]:
        return [PeopleStream(self)]


if __name__ == "__main__":
    TapPeople.cli()
