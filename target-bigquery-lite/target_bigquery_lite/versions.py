"""ACTIVATE_VERSION: rows of older versions of a full-table stream are deleted at the end.

Every record's `version` (or, without one, the stream's latest ACTIVATE_VERSION) is staged
into `_sdc_table_version`; after the last batch of a run that succeeded, one DELETE removes
the rows of versions older than the active one, and rows loaded without a version by earlier
runs. Rows this run loaded without a version (records sent before its ACTIVATE_VERSION) carry
its run id in `_bqlite_run` and are kept: a stream whose table has the version column is
versioned from its SCHEMA on; one that becomes versioned in the middle of a run keeps every
row without a version this time. A failed run deletes nothing, so a broken sync never
empties a table; and STATE messages that follow an ACTIVATE_VERSION wait for the DELETE, so a
saved state never claims a sync whose clean-up did not happen. This works the same for every
load method, after the method's own end-of-run work.
"""

from __future__ import annotations

import logging

from google.cloud import bigquery

from target_bigquery_lite.columns import RUN_COLUMN, VERSION_COLUMN
from target_bigquery_lite.identifiers import quote, quote_table, shown
from target_bigquery_lite.jobs import step_name
from target_bigquery_lite.tables import Tables, whole_table_filter

VERSION_PARAMETER = "version"
RUN_PARAMETER = "run"

log = logging.getLogger("target_bigquery_lite")


def build_delete_old_versions_sql(
    target: str, *, keep_unmarked: bool = False, partition_filter: str | None = None
) -> str:
    """Delete rows of versions older than `@version`, and earlier runs' rows without one.

    `keep_unmarked`: rows without a version and without a run id are kept too (the run
    loaded some before it knew the stream was versioned, and cannot tell them apart).
    `partition_filter`: one that admits every partition, for a table that requires one
    (old versions may be in any partition, so the clean-up is never pruned).
    """
    version, run = quote(VERSION_COLUMN), quote(RUN_COLUMN)
    other_run = (
        f"{run} IS NOT NULL AND {run} != @{RUN_PARAMETER}"
        if keep_unmarked
        else f"{run} IS DISTINCT FROM @{RUN_PARAMETER}"
    )
    condition = f"{version} < @{VERSION_PARAMETER}\n   OR ({version} IS NULL AND {other_run})"
    if partition_filter:
        condition = f"{partition_filter} AND ({condition})"
    return f"DELETE FROM {target}\nWHERE {condition}"


def delete_old_versions(
    tables: Tables, stream: str, table: str, version: int, run: str, *, keep_unmarked: bool
) -> None:
    """Remove the rows of `table` that belong to versions before `version` (run `run` ends)."""
    if keep_unmarked:
        log.warning(
            "stream '%s': records without a version came before its first ACTIVATE_VERSION "
            "in this run, so rows without a version are kept this time (older runs' ones go "
            "at the next clean-up)",
            shown(stream),
        )
    target = quote_table(tables.project, tables.dataset, table)
    sql = build_delete_old_versions_sql(
        target, keep_unmarked=keep_unmarked, partition_filter=whole_table_filter(tables, table)
    )
    job = tables.runner.query(
        step_name(None, table, "versions"),
        sql,
        [
            bigquery.ScalarQueryParameter(VERSION_PARAMETER, "INT64", version),
            bigquery.ScalarQueryParameter(RUN_PARAMETER, "STRING", run),
        ],
    )
    log.info(
        "stream '%s': version %d is active; %s rows of older versions deleted",
        shown(stream),
        version,
        job.num_dml_affected_rows,
    )
