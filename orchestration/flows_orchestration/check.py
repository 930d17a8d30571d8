"""The check after a backfill: the table's rows in [start, end) against the source's.

Same figures as `dev_services.flows_check` (rows, distinct ids, time range,
sum(byte_count)), restricted to the backfill's range on both sides, so rows that other runs
loaded outside it do not count.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from dev_services.bigquery_emulator import emulator_client
from dev_services.flows_check import Figures
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

RETRY = bigquery.DEFAULT_RETRY.with_deadline(120)
"""A check that cannot reach BigQuery gives up after two minutes, not the client's ten."""
FIGURES = "count(*), count(DISTINCT id), min(time), max(time), sum(byte_count)"


def source_range_figures(db: Path, start: int, end: int) -> Figures:
    """Figures of the flows-api database's rows with start <= time < end."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute(
            f"SELECT {FIGURES} FROM flows WHERE time >= ? AND time < ?", (start, end)
        ).fetchone()
    finally:
        conn.close()
    return Figures(*row)


def table_range_figures(client: bigquery.Client, table: str, start: int, end: int) -> Figures:
    """Figures of a BigQuery table's rows with start <= time < end (0 rows if it is missing)."""
    try:
        client.get_table(table, retry=RETRY)
    except NotFound:
        return Figures(0, 0, None, None, None)
    dataset, name = (quote(part) for part in table.split("."))
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("start", "INT64", start),
            bigquery.ScalarQueryParameter("end", "INT64", end),
        ]
    )
    sql = f"SELECT {FIGURES} FROM {dataset}.{name} WHERE time >= @start AND time < @end"
    job = client.query(sql, job_config=config, retry=RETRY)
    return Figures(*next(iter(job.result(retry=RETRY))).values())


def quote(identifier: str) -> str:
    """A dataset or table name in backticks, refused if it could break out of them."""
    if not identifier or any(ch in identifier for ch in "`\\\n"):
        raise ValueError(f"invalid BigQuery identifier {identifier!r}")
    return f"`{identifier}`"


def flows_table(target: dict[str, Any]) -> str:
    """`dataset.table` the target writes the `flows` stream to."""
    return f"{target['dataset']}.{target.get('table_prefix') or ''}flows"


def bigquery_client(target: dict[str, Any]) -> bigquery.Client:
    """A client for the target's project: the emulator's when `api_endpoint` is set."""
    if target.get("api_endpoint"):
        return emulator_client(target["api_endpoint"], target["project"])
    if target.get("credentials_path"):
        return bigquery.Client.from_service_account_json(
            target["credentials_path"], project=target["project"]
        )
    return bigquery.Client(project=target["project"])
