"""`overwrite`: the run's rows replace the final table's, atomically, at the end of the run.

1. `prepare`: the final table (created or evolved as for every method) and the run's own
   expiring table `_bqlite_overwrite_<run>_<table>`, which collects every batch, with the
   final table's column types;
2. `commit`: one load job appends the batch to the run's table and pushes its expiry out;
3. `finish`, after the last batch of a run that succeeded: one transaction deletes the
   final table's rows and inserts the run's (readers see the old rows or the new ones,
   never a mix or an empty table; the table keeps its schema, partitioning, clustering and
   descriptions, which a copy job would replace), then the run's table is dropped.

Rows reach the final table only in step 3 (`commits_at_end`), so a STATE that follows the
stream's first record waits until then. Only when configured.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from google.cloud.bigquery import SchemaField

from target_bigquery_lite.identifiers import quote, quote_table, shown
from target_bigquery_lite.jobs import step_name
from target_bigquery_lite.layout import Layout
from target_bigquery_lite.load import load_staged
from target_bigquery_lite.load_methods.base import TablePlan, TableRequest
from target_bigquery_lite.schema_evolution import load_fields
from target_bigquery_lite.stage import StagedFile
from target_bigquery_lite.tables import Tables, run_table_name, whole_table_filter

log = logging.getLogger("target_bigquery_lite")


class OverwriteMethod:
    """Replace the table with the run's rows (see the module docstring)."""

    name = "overwrite"
    sequenced = False
    sequenced_across_runs = False
    commits_at_end = True

    def check_keys(self, stream: str, keys: tuple[SchemaField, ...]) -> None:
        """Any keys will do: rows are replaced, not matched."""

    def prepare(self, tables: Tables, request: TableRequest) -> TablePlan:
        """The final table and the run's expiring table that collects the batches."""
        fields = tables.ensure_table(
            request.table, request.wanted, request.layout, stream=request.stream
        )
        destination = run_table_name(request.run_id, request.table)
        # The final table's own column types and sub-field order: the INSERT at the end
        # assigns STRUCTs by position and needs no casts.
        own = load_fields(fields, request.wanted)
        collected = tables.ensure_table(destination, own, Layout(), expires=True)
        return TablePlan(
            stream=request.stream,
            table=request.table,
            method=self,
            keys=request.keys,
            table_fields=fields,
            load_fields=load_fields(collected, own),
            destination=destination,
            run_id=request.run_id,
        )

    def commit(self, tables: Tables, plan: TablePlan, staged: StagedFile, batch: int) -> None:
        """Append the batch to the run's table; keep that table from expiring."""
        load_staged(
            tables.runner,
            step_name(batch, plan.table, "load"),
            staged,
            tables.table_ref(plan.destination),
            plan.load_fields,
            truncate=False,
        )
        tables.extend_expiry(plan.destination)

    def finish(self, tables: Tables, plan: TablePlan) -> None:
        """Swap the run's rows into the final table in one transaction; drop the run's table."""
        sql = build_replace_sql(
            quote_table(tables.project, tables.dataset, plan.table),
            quote_table(tables.project, tables.dataset, plan.destination),
            [field.name for field in plan.load_fields],
            whole_table_filter(tables, plan.table) or "TRUE",
        )
        tables.runner.query(step_name(None, plan.table, "replace"), sql)
        tables.drop(plan.destination)
        log.info("stream '%s': table %s replaced", shown(plan.stream), shown(plan.table))


OVERWRITE = OverwriteMethod()


def build_replace_sql(
    target: str, source: str, columns: Sequence[str], every_row: str = "TRUE"
) -> str:
    """Replace all rows of `target` with those of `source` in one transaction.

    `every_row`: the DELETE's condition, true for every row (a partition filter admitting
    every partition, for a table that requires one).
    """
    columns_sql = ", ".join(quote(column) for column in columns)
    return (
        "BEGIN TRANSACTION;\n"
        f"DELETE FROM {target} WHERE {every_row};\n"
        f"INSERT INTO {target} ({columns_sql})\n"
        f"SELECT {columns_sql} FROM {source};\n"
        "COMMIT TRANSACTION;"
    )
