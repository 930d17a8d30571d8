"""Table layout: how a final table is partitioned and clustered, decided once per SCHEMA.

Every partitioning BigQuery allows: time-unit partitioning of a TIMESTAMP, DATE or DATETIME
column (`partition_granularity`: HOUR, DAY, MONTH, YEAR; DATE cannot be split by the hour)
and integer-range partitioning of an INT64 column (`partition_range`, required there).
Anything else is refused naming the stream and the column. A stream without the configured
columns gets a plain table (with a warning), so one setting can serve a tap with many
streams. An existing table keeps its layout (BigQuery cannot change partitioning in place,
and the target never recreates a table): a configured layout that differs is a warning
naming both, and statements filter on the partitioning the table really has.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from target_bigquery_lite.config import Settings
from target_bigquery_lite.errors import SchemaChangeError
from target_bigquery_lite.identifiers import column_name, shown
from target_bigquery_lite.partitions import TIME_TYPES, IntegerRange
from target_bigquery_lite.schema_evolution import canonical, source_of

CLUSTER_TYPES = frozenset({"INT64", "STRING", "BOOL", "DATE", "TIMESTAMP", "DATETIME", "NUMERIC"})

log = logging.getLogger("target_bigquery_lite")


@dataclass(frozen=True)
class PartitionColumn:
    """The partitioning column of a table: its name, type, record key, range or granularity."""

    name: str
    kind: str
    prop: str
    int_range: IntegerRange | None = None
    granularity: str | None = None
    required: bool = False
    """Whether the table requires a partition filter in every statement."""


@dataclass(frozen=True)
class Layout:
    """How a new final table is partitioned and clustered; whether MERGEs filter on it."""

    partition: PartitionColumn | None = None
    granularity: str | None = None
    int_range: IntegerRange | None = None
    cluster_fields: tuple[str, ...] = ()
    filter_merges: bool = False
    require_filter: bool = False

    @property
    def partition_field(self) -> str | None:
        """The partitioning column's name, if any."""
        return self.partition.name if self.partition else None

    def describe(self) -> str:
        """One line for logs and the demo: `time RANGE(0, 315576000, 43200), cluster id`."""
        if self.int_range is not None and self.partition is not None:
            r = self.int_range
            part = f"{self.partition.name} RANGE({r.start}, {r.end}, {r.interval})"
        elif self.partition is not None:
            part = f"{self.partition.name} {self.granularity or 'DAY'}"
        else:
            part = "not partitioned"
        cluster = f", clustered on {', '.join(self.cluster_fields)}" if self.cluster_fields else ""
        return part + cluster

    def apply(self, table: bigquery.Table) -> None:
        """Set the layout on a table about to be created."""
        if self.partition is not None and self.int_range is not None:
            r = self.int_range
            table.range_partitioning = bigquery.RangePartitioning(
                field=self.partition.name,
                range_=bigquery.PartitionRange(start=r.start, end=r.end, interval=r.interval),
            )
        elif self.partition is not None:
            table.time_partitioning = bigquery.TimePartitioning(
                type_=self.granularity or "DAY", field=self.partition.name
            )
        if self.cluster_fields:
            table.clustering_fields = list(self.cluster_fields)
        if self.partition is not None and self.require_filter:
            table.require_partition_filter = True


def table_layout(fields: tuple[SchemaField, ...], settings: Settings, stream: str) -> Layout:
    """The partitioning and clustering a new table for this stream gets.

    Raises:
        SchemaChangeError: when a configured column exists with a type BigQuery cannot
            partition or cluster on, or its partitioning settings do not fit its type.
    """
    by_name = {field.name.lower(): field for field in fields}
    partition, granularity, int_range = None, None, None
    if settings.partition_field:
        found = by_name.get(column_name(settings.partition_field).lower())
        if found is None:
            log.warning(
                "stream '%s' has no column %s: table not partitioned",
                shown(stream),
                settings.partition_field,
            )
        else:
            field = canonical(found)
            _check_partitioning(field, settings, stream)
            if field.field_type == "INT64":
                int_range = settings.partition_range
            else:
                granularity = settings.partition_granularity
            prop = source_of(found) or found.name
            partition = PartitionColumn(field.name, field.field_type, prop, int_range, granularity)
    cluster = tuple(by_name.get(column_name(name).lower()) for name in settings.cluster_fields)
    clustered: tuple[str, ...] = ()
    if any(field is None for field in cluster):
        if cluster:
            log.warning("stream '%s' lacks some cluster_fields: table not clustered", shown(stream))
    else:
        for field in cluster:
            assert field is not None
            kind = canonical(field)
            if kind.field_type not in CLUSTER_TYPES or kind.mode == "REPEATED":
                raise SchemaChangeError(
                    f"cluster field {field.name} of stream '{shown(stream)}' is "
                    f"{kind.field_type} {kind.mode}, which BigQuery cannot cluster on"
                )
        clustered = tuple(field.name for field in cluster if field is not None)
    filter_merges = settings.merge_partition_filter and partition is not None
    required = settings.require_partition_filter and partition is not None
    return Layout(partition, granularity, int_range, clustered, filter_merges, required)


def _check_partitioning(field: SchemaField, settings: Settings, stream: str) -> None:
    where = f"partition_field {field.name} of stream '{shown(stream)}'"
    if field.mode == "REPEATED" or field.field_type not in {*TIME_TYPES, "INT64"}:
        raise SchemaChangeError(
            f"{where} is {field.field_type} {field.mode}; BigQuery partitions on a TIMESTAMP, "
            "DATE or DATETIME column (time-unit) or an INT64 column (integer range) only"
        )
    if field.field_type == "INT64" and settings.partition_range is None:
        raise SchemaChangeError(
            f"{where} is INT64: integer-range partitioning needs 'partition_range' "
            '{"start": ..., "end": ..., "interval": ...}'
        )
    if field.field_type != "INT64" and settings.partition_range is not None:
        raise SchemaChangeError(
            f"{where} is {field.field_type}: 'partition_range' applies to INT64 columns only "
            "(time columns take 'partition_granularity')"
        )
    if field.field_type == "DATE" and settings.partition_granularity == "HOUR":
        raise SchemaChangeError(f"{where} is DATE, which BigQuery cannot partition by HOUR")


def existing_layout(table: bigquery.Table) -> Layout:
    """The layout a table has (the partitioning column's record key is its name here)."""
    by_name = {field.name.lower(): canonical(field) for field in table.schema}
    partition, granularity, int_range = None, None, None
    ranged, timed = table.range_partitioning, table.time_partitioning
    required = bool(table.require_partition_filter)
    if ranged is not None and ranged.field:
        r = ranged.range_
        int_range = IntegerRange(int(r.start), int(r.end), int(r.interval))
        partition = PartitionColumn(ranged.field, "INT64", ranged.field, int_range, None, required)
    elif timed is not None:
        granularity = timed.type_ or "DAY"
        if timed.field:
            kind = by_name.get(timed.field.lower())
            kind_name = kind.field_type if kind else "TIMESTAMP"
            partition = PartitionColumn(
                timed.field, kind_name, timed.field, None, granularity, required
            )
    clusters = tuple(table.clustering_fields or ())
    return Layout(partition, granularity, int_range, clusters, require_filter=required)


def differs(existing: Layout, configured: Layout) -> bool:
    """Whether a table's layout is not the configured one (partitioning or clustering)."""

    def key(layout: Layout) -> tuple:
        name = (layout.partition_field or "").lower()
        clusters = tuple(field.lower() for field in layout.cluster_fields)
        return name, layout.granularity, layout.int_range, clusters

    return key(existing) != key(configured)


def tracked_partition(
    actual: Layout, configured: Layout, wanted: tuple[SchemaField, ...]
) -> PartitionColumn | None:
    """The partitioning column whose batch bounds are tracked, if any.

    Tracked when MERGEs filter on it, when it is an integer range (values outside it
    are warned about), or when the table requires a partition filter. The column is the
    table's own (`actual`, which wins over the configured one); its record key comes from
    the stream's columns.
    """
    column = actual.partition
    if column is None:
        return None
    if not (configured.filter_merges or column.required or column.int_range is not None):
        return None
    for field in wanted:
        if field.name.lower() == column.name.lower():
            prop = source_of(field) or field.name
            return replace(column, prop=prop)
    return None
