"""The backfill plan: `[start, end)` cut into time ranges, each one Dagster partition.

A partition's key is its range (`"<start>-<end>"`), and the keys are stored in the Dagster
instance as the job's dynamic partitions: once planned, a backfill keeps its ranges even if
the source grows (rows after `end` are the next incremental run's), and a rerun finds each
partition's state by its key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import requests

STREAM_PATH = "/api/v1/stream/flows.json"


@dataclass(frozen=True, order=True)
class TimeRange:
    """One partition: the rows with `start <= time < end`."""

    start: int
    end: int

    @property
    def key(self) -> str:
        """The Dagster partition key."""
        return f"{self.start}-{self.end}"

    @classmethod
    def from_key(cls, key: str) -> TimeRange:
        """Parse a partition key made by `key`."""
        start, _, end = key.partition("-")
        try:
            return cls(int(start), int(end))
        except ValueError:
            raise ValueError(f"partition key {key!r} is not '<start>-<end>'") from None


def split(start: int, end: int, count: int) -> list[TimeRange]:
    """Cut [start, end) into `count` contiguous ranges of (nearly) equal length."""
    if end <= start:
        raise ValueError(f"empty range [{start}, {end})")
    count = max(1, min(count, end - start))
    bounds = [start + (end - start) * i // count for i in range(count + 1)]
    return [TimeRange(bounds[i], bounds[i + 1]) for i in range(count)]


def covered(ranges: list[TimeRange]) -> tuple[int, int]:
    """The [start, end) a list of contiguous ranges covers."""
    ordered = sorted(ranges)
    return ordered[0].start, ordered[-1].end


class SourceProbe:
    """Finds the source's time range with cheap `limit=1` requests (indexed on the server)."""

    def __init__(self, api_url: str, api_key: str | None) -> None:
        """Ask `api_url`, with the bearer key if there is one."""
        self.url = api_url.rstrip("/") + STREAM_PATH
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def first_time_from(self, since: int) -> int | None:
        """The time of the first row with `time >= since`, or None."""
        response = self.session.get(self.url, params={"since": since, "limit": 1}, timeout=60)
        response.raise_for_status()
        line = response.content.strip()
        return json.loads(line)["time"] if line else None

    def time_range(self) -> tuple[int, int] | None:
        """[first time, last time + 1) of the source, or None when it is empty."""
        first = self.first_time_from(0)
        if first is None:
            return None
        low, high = first, max(1, first) * 2  # a row has time >= low; find a bound without
        while self.first_time_from(high) is not None:
            low, high = high, high * 2
        while high - low > 1:  # invariant: rows at >= low, none at >= high
            middle = (low + high) // 2
            if self.first_time_from(middle) is None:
                high = middle
            else:
                low = middle
        return first, high
