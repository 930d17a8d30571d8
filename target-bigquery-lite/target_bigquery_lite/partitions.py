"""Partition ranges and bounds: how many partitions a layout makes, what a batch touches.

BigQuery prunes partitions only on constant filters of the partitioning column, so the
MERGE of a batch carries the batch's own minimum and maximum of that column as literals
(see `target_filter_sql`). The bounds are gathered while rows are staged (`Bounds.see`,
one comparison per row, only when `merge_partition_filter` is on) and are rendered here
from parsed, typed values: no text of a record ever reaches the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from target_bigquery_lite.errors import ConfigError

MAX_PARTITIONS = 10_000
"""BigQuery's limit of partitions per table (integer ranges must fit in it)."""
GRANULARITIES = ("HOUR", "DAY", "MONTH", "YEAR")
TIME_TYPES = frozenset({"TIMESTAMP", "DATE", "DATETIME"})
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class IntegerRange:
    """Integer-range partitioning: partitions [start + k*interval, ...) up to `end`."""

    start: int
    end: int
    interval: int

    @property
    def partitions(self) -> int:
        """How many partitions the range makes (the last one may be shorter)."""
        return -(-(self.end - self.start) // self.interval)


def parse_range(value: Any) -> IntegerRange:
    """Check a `partition_range` setting: integers, start < end, interval > 0, <= 10,000.

    Raises:
        ConfigError: naming what is wrong, and for too many partitions the smallest
            interval that fits.
    """
    keys = ("start", "end", "interval")
    if not isinstance(value, dict) or set(value) != set(keys):
        raise ConfigError(
            'config: \'partition_range\' must be {"start": ..., "end": ..., "interval": ...} '
            f"(got {value!r})"
        )
    numbers = [value[key] for key in keys]
    if any(
        isinstance(n, bool) or not isinstance(n, int) or not INT64_MIN <= n <= INT64_MAX
        for n in numbers
    ):
        raise ConfigError(
            f"config: 'partition_range' values must be INT64 integers (got {value!r})"
        )
    found = IntegerRange(*numbers)
    if found.start >= found.end or found.interval <= 0:
        raise ConfigError(
            f"config: 'partition_range' needs start < end and interval > 0 (got {value!r})"
        )
    if found.partitions > MAX_PARTITIONS:
        smallest = -(-(found.end - found.start) // MAX_PARTITIONS)
        raise ConfigError(
            f"config: 'partition_range' makes {found.partitions} partitions; BigQuery allows "
            f"{MAX_PARTITIONS}: use an interval of at least {smallest}"
        )
    return found


class Bounds:
    """The smallest and largest partition value among a batch's staged rows.

    `known` turns false when a value could not be read (the MERGE then asks the staging
    table, see `merge.py`); `nulls` when a row has no value (its partition is `__NULL__`).
    """

    __slots__ = ("high", "key", "kind", "known", "low", "nulls")

    def __init__(self, key: str, kind: str) -> None:
        """Track property `key` of records; `kind` is the column's BigQuery type."""
        self.key = key
        self.kind = kind
        self.low: Any = None
        self.high: Any = None
        self.nulls = False
        self.known = True

    def see(self, record: dict[str, Any]) -> None:
        """Take one record's value into account (the per-row hook)."""
        value = record.get(self.key)
        if value is None:
            self.nulls = True
            return
        try:
            value = _typed(value, self.kind)
        except (TypeError, ValueError):
            self.known = False
            return
        if self.low is None or value < self.low:
            self.low = value
        if self.high is None or value > self.high:
            self.high = value

    def unknown(self) -> None:
        """Rows were staged without being read (BATCH files): the bounds must be asked for."""
        self.known = False


def _typed(value: Any, kind: str) -> Any:
    if kind == "INT64":
        if type(value) is not int:
            raise TypeError(kind)
        return value
    if type(value) is not str:
        raise TypeError(kind)
    if kind == "DATE":
        return date.fromisoformat(value)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if kind == "TIMESTAMP":
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return parsed.replace(tzinfo=None)


def literal(value: Any, kind: str) -> str:
    """A BigQuery literal of a typed bound (ints, dates and datetimes we parsed ourselves)."""
    if kind == "INT64":
        return str(int(value))
    if kind == "DATE":
        return f"DATE '{value.isoformat()}'"
    if kind == "TIMESTAMP":
        return f"TIMESTAMP '{value.astimezone(UTC).isoformat(sep=' ')}'"
    return f"DATETIME '{value.isoformat(sep=' ')}'"


def target_filter_sql(
    column: str, kind: str, bounds: Bounds, granularity: str | None, span: IntegerRange | None
) -> str:
    """`column BETWEEN low AND high` (or `IS NULL`): the constant filter BigQuery prunes on.

    `column` is already qualified and quoted. The bounds are widened to whole partitions
    (`partition_span`): that admits no more bytes, and a key whose value moved within its
    partition is still matched. A batch with rows without a value also admits the
    `__NULL__` partition, where their keys may already be.
    """
    parts = []
    if bounds.low is not None:
        low, high = partition_span(bounds.low, bounds.high, kind, granularity, span)
        parts.append(f"{column} BETWEEN {literal(low, kind)} AND {literal(high, kind)}")
    if bounds.nulls or not parts:
        parts.append(f"{column} IS NULL")
    return parts[0] if len(parts) == 1 else f"({' OR '.join(parts)})"


def partition_span(
    low: Any, high: Any, kind: str, granularity: str | None, span: IntegerRange | None
) -> tuple[Any, Any]:
    """The first value of `low`'s partition and the last value of `high`'s.

    Values outside an integer range (in `__UNPARTITIONED__`) are kept as they are.
    """
    if kind == "INT64":
        if span is None:
            return low, high
        if span.start <= low < span.end:
            low = span.start + (low - span.start) // span.interval * span.interval
        if span.start <= high < span.end:
            last = span.start + ((high - span.start) // span.interval + 1) * span.interval
            high = min(last, span.end) - 1
        return low, high
    unit = granularity or "DAY"
    first = _truncate(low, unit)
    after = _next_partition(_truncate(high, unit), unit)
    if after is None:
        return first, high
    step = timedelta(days=1) if kind == "DATE" else timedelta(microseconds=1)
    return first, after - step


def _truncate(value: Any, unit: str) -> Any:
    if isinstance(value, datetime):
        value = value.replace(minute=0, second=0, microsecond=0)
        if unit != "HOUR":
            value = value.replace(hour=0)
    if unit in {"MONTH", "YEAR"}:
        value = value.replace(day=1)
    if unit == "YEAR":
        value = value.replace(month=1)
    return value


def _next_partition(start: Any, unit: str) -> Any | None:
    """The start of the partition after the one starting at `start`; None past year 9999."""
    try:
        if unit == "HOUR":
            return start + timedelta(hours=1)
        if unit == "DAY":
            return start + timedelta(days=1)
        if unit == "MONTH":
            month = start.month % 12 + 1
            return start.replace(year=start.year + (month == 1), month=month)
        return start.replace(year=start.year + 1)
    except (OverflowError, ValueError):
        return None


_LOWEST = {
    "INT64": "-9223372036854775808",
    "DATE": "DATE '0001-01-01'",
    "TIMESTAMP": "TIMESTAMP '0001-01-01 00:00:00+00'",
    "DATETIME": "DATETIME '0001-01-01 00:00:00'",
}


def all_partitions_sql(column: str, kind: str) -> str:
    """A constant filter every row passes, for whole-table statements.

    A table that requires a partition filter (`require_partition_filter`) refuses a
    statement without one, even one meant for every row.
    """
    return f"({column} IS NULL OR {column} >= {_LOWEST[kind]})"
