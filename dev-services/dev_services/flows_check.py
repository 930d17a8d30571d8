"""Compare a BigQuery flows table with the flows-api database it was loaded from.

The demo, the end-to-end tests, the kill-loop and the benchmark all ask the same question
(did every source row land exactly once?) and answer it with the same figures.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

COLUMNS = (
    "id", "time", "duration", "src_comp", "src_port", "dst_comp", "dst_port",
    "protocol", "packet_count", "byte_count",
)  # fmt: skip


@dataclass(frozen=True)
class Figures:
    """Row count, distinct ids, time range and a checksum column of a flows table."""

    rows: int
    distinct_ids: int
    min_time: int | None
    max_time: int | None
    sum_byte_count: int | None

    def describe(self) -> str:
        """One line for logs and the demo."""
        if not self.rows:
            return "0 rows"
        return (
            f"{self.rows:,} rows, {self.distinct_ids:,} distinct ids, "
            f"time {self.min_time:,}..{self.max_time:,}, sum(byte_count) {self.sum_byte_count:,}"
        )

    def as_dict(self) -> dict[str, int | None]:
        """The figures by name."""
        return asdict(self)


_FIGURES_SQL = (
    "SELECT count(*), count(DISTINCT id), min(time), max(time), sum(byte_count) FROM {table}"
)


def source_figures(db: Path, until: int | None = None) -> Figures:
    """Figures of the flows-api database (rows with `time < until` when given)."""
    sql = _FIGURES_SQL.format(table="flows")
    params: tuple[int, ...] = ()
    if until is not None:
        sql += " WHERE time < ?"
        params = (until,)
    conn = sqlite3.connect(db)
    try:
        return Figures(*conn.execute(sql, params).fetchone())
    finally:
        conn.close()


def table_figures(client: bigquery.Client, table: str) -> Figures:
    """Figures of a BigQuery table `dataset.table` (0 rows if it does not exist yet)."""
    try:
        client.get_table(table)
    except NotFound:
        return Figures(0, 0, None, None, None)
    sql = _FIGURES_SQL.format(table=f"`{table}`")
    return Figures(*next(iter(client.query(sql).result())).values())


def source_rows(db: Path, ids: list[int]) -> dict[int, tuple]:
    """Full source rows by id, for per-column comparisons on a sample."""
    conn = sqlite3.connect(db)
    try:
        marks = ",".join("?" * len(ids))
        sql = f"SELECT {', '.join(COLUMNS)} FROM flows WHERE id IN ({marks})"
        return {row[0]: tuple(row) for row in conn.execute(sql, ids)}
    finally:
        conn.close()


def table_rows(client: bigquery.Client, table: str, ids: list[int]) -> dict[int, tuple]:
    """Full table rows by id (all ten columns), for the same comparison."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM `{table}` WHERE id IN UNNEST(@ids)"
    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ArrayQueryParameter("ids", "INT64", ids)]
    )
    return {row[0]: tuple(row.values()) for row in client.query(sql, job_config=config).result()}
