"""Estimate what a MERGE's target side admits, where BigQuery's byte counts are missing.

The local emulator returns no `totalBytesProcessed`. BigQuery bills a MERGE with an UPDATE
clause for every column of the target table in the partitions it cannot prune (the DML
pricing rules), so the estimate is: the rows of the partitions the statement's constant
partition filter admits, times each row's size by BigQuery's documented data sizes
(INT64, FLOAT64, TIMESTAMP, DATE, DATETIME: 8 bytes; BOOL 1; NUMERIC 16; BIGNUMERIC 32;
STRING and BYTES 2 + their length; NULL 0). An unfiltered MERGE admits the whole table.
Used by the tests (pruning happens) and by `make bench CONFIGS=cost`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.cloud import bigquery

TARGET_ALIAS = "_TABLE_target"
_FIXED = {"BOOL": 1, "BOOLEAN": 1, "NUMERIC": 16, "BIGNUMERIC": 32}
"""Bytes of the fixed-size types that are not 8 bytes (INT64, FLOAT64, TIMESTAMP, ... are)."""
_FILTER = re.compile(r"\n  AND (?P<filter>.+?)\nWHEN ", re.DOTALL)
_BETWEEN = re.compile(r"BETWEEN (?P<low>.+?) AND (?P<high>.+?)(?:\)| OR |$)")


@dataclass(frozen=True)
class Admitted:
    """What one MERGE's target side admits, against the whole table (an estimate)."""

    rows: int
    bytes: int
    table_rows: int
    table_bytes: int


def target_filter(sql: str) -> str | None:
    """The constant partition filter the target put on a MERGE's target side, if any."""
    found = _FILTER.search(sql)
    return found.group("filter") if found else None


def admitted(
    client: bigquery.Client, table_id: str, sql: str, columns: tuple[str, ...] | None = None
) -> Admitted:
    """Rows and bytes of `table_id` in the partitions the MERGE `sql` admits (estimate).

    `columns`: the target columns the statement reads (all of them with an UPDATE clause;
    an insert-only MERGE reads only its key and filter columns).
    """
    table = client.get_table(table_id)
    read = [f for f in table.schema if columns is None or f.name in columns]
    size = " + ".join(_size_sql(field) for field in read) or "0"
    where = _admitted_sql(table, target_filter(sql))
    query = (
        f"SELECT COUNTIF({where}) AS rows_in, SUM(IF({where}, {size}, 0)) AS bytes_in, "
        f"COUNT(*) AS rows_all, SUM({size}) AS bytes_all FROM `{table_id}` AS {TARGET_ALIAS}"
    )
    row = next(iter(client.query(query).result()))
    return Admitted(
        int(row["rows_in"] or 0),
        int(row["bytes_in"] or 0),
        int(row["rows_all"] or 0),
        int(row["bytes_all"] or 0),
    )


def _size_sql(field: bigquery.SchemaField) -> str:
    column = f"{TARGET_ALIAS}.`{field.name}`"
    if field.mode == "REPEATED" or field.field_type in {"RECORD", "STRUCT", "JSON"}:
        return f"IFNULL(BYTE_LENGTH(TO_JSON_STRING({column})), 0)"
    if field.field_type in {"STRING", "BYTES"}:
        return f"IF({column} IS NULL, 0, 2 + BYTE_LENGTH({column}))"
    return f"IF({column} IS NULL, 0, {_FIXED.get(field.field_type, 8)})"


def _admitted_sql(table: bigquery.Table, filter_sql: str | None) -> str:
    """A condition true for the rows of every partition the filter cannot prune."""
    if filter_sql is None:
        return "TRUE"
    nulls = "IS NULL" in filter_sql
    found = _BETWEEN.search(filter_sql)
    if found is None:
        return _null_partition(table) if nulls else "FALSE"
    low, high = found.group("low"), found.group("high")
    parts = [_partitions_between(table, low, high)]
    if nulls:
        parts.append(_null_partition(table))
    return "(" + " OR ".join(parts) + ")"


def _partitions_between(table: bigquery.Table, low: str, high: str) -> str:
    ranged, timed = table.range_partitioning, table.time_partitioning
    if ranged is not None:
        column = f"{TARGET_ALIAS}.`{ranged.field}`"
        start, end = int(ranged.range_.start), int(ranged.range_.end)
        interval, lo, hi = int(ranged.range_.interval), int(low), int(high)
        inside = f"({column} >= {start} AND {column} < {end})"
        parts = []
        if lo < end and hi >= start:
            first = start + (max(lo, start) - start) // interval * interval
            after = min(end, start + ((min(hi, end - 1) - start) // interval + 1) * interval)
            parts.append(f"({column} >= {first} AND {column} < {after})")
        if lo < start or hi >= end:  # __UNPARTITIONED__
            parts.append(f"NOT {inside}")
        return "(" + " OR ".join(parts or ["FALSE"]) + ")"
    column = f"{TARGET_ALIAS}.`{timed.field}`"
    kind = next(f.field_type for f in table.schema if f.name.lower() == timed.field.lower())
    trunc = {"TIMESTAMP": "TIMESTAMP_TRUNC", "DATE": "DATE_TRUNC", "DATETIME": "DATETIME_TRUNC"}
    function, unit = trunc[kind], timed.type_ or "DAY"
    return (
        f"{function}({column}, {unit}) BETWEEN {function}({low}, {unit}) "
        f"AND {function}({high}, {unit})"
    )


def _null_partition(table: bigquery.Table) -> str:
    ranged, timed = table.range_partitioning, table.time_partitioning
    field = ranged.field if ranged is not None else timed.field
    return f"{TARGET_ALIAS}.`{field}` IS NULL"
