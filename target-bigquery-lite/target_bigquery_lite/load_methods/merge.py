"""`merge`: upsert each batch on the key properties, the latest record per key winning.

One batch, in four steps:

1. load the staged file into an expiring staging table of its own (`WRITE_TRUNCATE`, so a
   retried load cannot double rows), with the final table's column types plus the arrival
   order `_bqlite_seq`;
2. MERGE it into the final table: within the batch only the last-arrived row per key
   survives, then matched keys are updated and new keys inserted. With
   `merge_partition_filter` the target side is restricted to the batch's partition bounds
   (constants, so BigQuery prunes the other partitions; tracked while staging, or read
   from the staging table for BATCH files staged unread);
3. drop the staging table (it expires by itself if a crash leaves it behind);
4. the batch is committed: the runner may pass on the states it covers.

The default for streams with key properties.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from google.cloud.bigquery import SchemaField

from target_bigquery_lite.columns import SEQUENCE_COLUMN, SEQUENCE_FIELD
from target_bigquery_lite.errors import TargetError
from target_bigquery_lite.identifiers import quote, quote_table, shown
from target_bigquery_lite.jobs import step_name
from target_bigquery_lite.layout import tracked_partition
from target_bigquery_lite.load import load_staged
from target_bigquery_lite.load_methods.base import TablePlan, TableRequest
from target_bigquery_lite.load_methods.keys import check_partition_keys
from target_bigquery_lite.partitions import Bounds, all_partitions_sql, target_filter_sql
from target_bigquery_lite.schema_evolution import load_fields
from target_bigquery_lite.stage import StagedFile
from target_bigquery_lite.tables import Tables, staging_table_name

# Aliases no column of ours can have (an unqualified `SET T = ...` would mean the whole row):
# a property named `_TABLE_...` becomes column `__TABLE_...`, BigQuery reserving the prefix.
TARGET_ALIAS = "_TABLE_target"
SOURCE_ALIAS = "_TABLE_batch"
# A row without its key could never be matched, so every rerun would insert it again.
NULL_KEY_ERROR = "a row of this batch has a null or missing key property"

log = logging.getLogger("target_bigquery_lite")


class MergeMethod:
    """Upsert on the key properties (see the module docstring)."""

    name = "merge"
    sequenced = True
    sequenced_across_runs = False
    commits_at_end = False

    def check_keys(self, stream: str, keys: tuple[SchemaField, ...]) -> None:
        """A MERGE matches and deduplicates on scalar keys BigQuery can partition by.

        Raises:
            InputError: see `keys.check_partition_keys`.
        """
        check_partition_keys(stream, keys, "a MERGE needs keys BigQuery can match and partition by")

    def prepare(self, tables: Tables, request: TableRequest) -> TablePlan:
        """The final table; batches load into staging tables with its column types."""
        fields = tables.ensure_table(
            request.table, request.wanted, request.layout, stream=request.stream
        )
        actual = tables.layout_of(request.table)  # the table's own layout wins
        partition = tracked_partition(actual, request.layout, fields)
        return TablePlan(
            stream=request.stream,
            table=request.table,
            method=self,
            keys=request.keys,
            table_fields=fields,
            load_fields=(*load_fields(fields, request.wanted), SEQUENCE_FIELD),
            destination=request.table,
            run_id=request.run_id,
            partition=partition,
            filter_merges=request.layout.filter_merges and partition is not None,
            merge_update=request.merge_update,
        )

    def commit(self, tables: Tables, plan: TablePlan, staged: StagedFile, batch: int) -> None:
        """Load into the batch's staging table, MERGE, drop the staging table."""
        started = time.monotonic()
        staging = staging_table_name(plan.run_id, batch, plan.table)
        tables.create_staging(staging, plan.load_fields)
        load_staged(
            tables.runner,
            step_name(batch, plan.table, "load"),
            staged,
            tables.table_ref(staging),
            plan.load_fields,
            truncate=True,
        )
        loaded = time.monotonic()
        columns = [field.name for field in plan.load_fields if field.name != SEQUENCE_COLUMN]
        target_filter = None
        if plan.partition is not None:
            bounds = _batch_bounds(tables, plan, staged, staging, batch)
            _warn_outside_range(plan, bounds, batch)
            part = plan.partition
            column = f"{TARGET_ALIAS}.{quote(part.name)}"
            if plan.filter_merges and bounds is not None:
                target_filter = target_filter_sql(
                    column, part.kind, bounds, part.granularity, part.int_range
                )
            elif part.required:  # the whole table, as a filter the table accepts
                target_filter = all_partitions_sql(column, part.kind)
        sql = build_merge_sql(
            quote_table(tables.project, tables.dataset, plan.table),
            quote_table(tables.project, tables.dataset, staging),
            plan.keys,
            columns,
            target_filter,
            update=plan.merge_update,
        )
        tables.runner.query(step_name(batch, plan.table, "merge"), sql)
        merged = time.monotonic()
        try:
            tables.drop(staging)
        except TargetError as exc:  # committed already; the expiration removes it later
            log.warning("could not drop staging table %s (it expires by itself): %s", staging, exc)
        log.info(
            "batch %d %s: %d rows loaded in %.2f s, merged in %.2f s, staging dropped in %.2f s",
            batch,
            shown(plan.table),
            staged.rows,
            loaded - started,
            merged - loaded,
            time.monotonic() - merged,
        )

    def finish(self, tables: Tables, plan: TablePlan) -> None:
        """Nothing: every batch was merged when it was committed."""


MERGE = MergeMethod()


def _batch_bounds(
    tables: Tables, plan: TablePlan, staged: StagedFile, staging: str, batch: int
) -> Bounds | None:
    """The batch's partition bounds: as tracked while staging, else (to filter) asked.

    Rows copied from BATCH files unread have no tracked bounds: one query of the staging
    table's partition column (which bills only that column of the batch) reads them.
    """
    bounds = staged.bounds
    if bounds is not None and bounds.known:
        return bounds
    partition = plan.partition
    if partition is None or not plan.filter_merges:
        return None
    column = quote(partition.name)
    sql = (
        f"SELECT MIN({column}) AS low, MAX({column}) AS high, "
        f"COUNTIF({column} IS NULL) > 0 AS has_nulls "
        f"FROM {quote_table(tables.project, tables.dataset, staging)}"
    )
    job = tables.runner.query(step_name(batch, plan.table, "bounds"), sql)
    row = next(iter(job.result()))
    asked = Bounds(partition.prop, partition.kind)
    asked.low, asked.high, asked.nulls = row["low"], row["high"], bool(row["has_nulls"])
    return asked


def _warn_outside_range(plan: TablePlan, bounds: Bounds | None, batch: int) -> None:
    """Rows beyond an integer range land in `__UNPARTITIONED__`, which every filter admits."""
    assert plan.partition is not None
    span = plan.partition.int_range
    if span is None or bounds is None or bounds.low is None:
        return
    if bounds.low < span.start or bounds.high >= span.end:
        log.warning(
            "batch %d %s: %s values from %d to %d reach outside partition_range [%d, %d); "
            "those rows go to partition __UNPARTITIONED__ (widen the range for new tables)",
            batch,
            shown(plan.table),
            plan.partition.name,
            bounds.low,
            bounds.high,
            span.start,
            span.end,
        )


def build_merge_sql(
    target: str,
    source: str,
    keys: Sequence[str],
    columns: Sequence[str],
    target_filter: str | None = None,
    *,
    update: bool = True,
) -> str:
    """MERGE the staging table `source` into `target` on `keys`, latest record winning.

    Within the batch only the last-arrived row per key survives (`SEQUENCE_COLUMN`, the
    arrival order, exists only in the staging table). Only `columns` (the batch's own) are
    updated or inserted, so a final table with more columns (added by earlier schemas or by
    hand) never breaks the statement; columns it lacks keep their values. A row with a null
    key fails the statement (records are checked before staging, raw BATCH rows are not).
    `target_filter` (built by `partitions.target_filter_sql` on `TARGET_ALIAS`) restricts
    the target side in the ON clause, where BigQuery prunes on it; a target row outside it
    is never matched, hence `merge_partition_filter`'s rule that partition values never
    change. `update=False` leaves matched rows alone (`merge_update: false`): the statement
    then reads only the target's key (and filter) columns.
    """
    keys_sql = [quote(key) for key in keys]
    columns_sql = [quote(column) for column in columns]
    partition = ", ".join(keys_sql)
    null_key = " OR ".join(f"{key} IS NULL" for key in keys_sql)
    target_row, batch_row = TARGET_ALIAS, SOURCE_ALIAS
    matched = " AND ".join(f"{target_row}.{key} = {batch_row}.{key}" for key in keys_sql)
    if target_filter:
        matched = f"{matched}\n  AND {target_filter}"
    updates = ",\n    ".join(
        f"{col} = {batch_row}.{col}" for col in columns_sql if col not in keys_sql
    )
    update_clause = f"WHEN MATCHED THEN UPDATE SET\n    {updates}\n" if updates and update else ""
    values = ", ".join(f"{batch_row}.{col}" for col in columns_sql)
    return (
        f"MERGE {target} AS {target_row}\n"
        f"USING (\n"
        f"  SELECT * EXCEPT ({quote(SEQUENCE_COLUMN)}) FROM {source}\n"
        f"  WHERE IF({null_key}, ERROR('{NULL_KEY_ERROR}'), TRUE)\n"
        f"  QUALIFY ROW_NUMBER() OVER (\n"
        f"    PARTITION BY {partition} ORDER BY {quote(SEQUENCE_COLUMN)} DESC) = 1\n"
        f") AS {batch_row}\n"
        f"ON {matched}\n"
        f"{update_clause}"
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns_sql)})\n"
        f"  VALUES ({values})"
    )
