"""`append`: each batch is one load job straight into the final table.

A load job is atomic, and its deterministic job id makes a retried one a no-op, so a batch
is appended at most once per run. Across runs nothing deduplicates: a run killed between a
load and the state after it loads those rows again when rerun. The default for streams
without key properties.
"""

from __future__ import annotations

from google.cloud.bigquery import SchemaField

from target_bigquery_lite.jobs import step_name
from target_bigquery_lite.load import load_staged
from target_bigquery_lite.load_methods.base import TablePlan, TableRequest
from target_bigquery_lite.schema_evolution import plain
from target_bigquery_lite.stage import StagedFile
from target_bigquery_lite.tables import Tables


class AppendMethod:
    """Append every batch (see the module docstring)."""

    name = "append"
    sequenced = False
    sequenced_across_runs = False
    commits_at_end = False

    def check_keys(self, stream: str, keys: tuple[SchemaField, ...]) -> None:
        """Any keys will do: they are ordinary columns here."""

    def prepare(self, tables: Tables, request: TableRequest) -> TablePlan:
        """The final table; loads into it need its full schema."""
        fields = tables.ensure_table(
            request.table, request.wanted, request.layout, stream=request.stream
        )
        return TablePlan(
            stream=request.stream,
            table=request.table,
            method=self,
            keys=request.keys,
            table_fields=fields,
            load_fields=tuple(plain(field) for field in fields),
            destination=request.table,
            run_id=request.run_id,
        )

    def commit(self, tables: Tables, plan: TablePlan, staged: StagedFile, batch: int) -> None:
        """One load job appending the batch to the final table."""
        load_staged(
            tables.runner,
            step_name(batch, plan.table, "load"),
            staged,
            tables.table_ref(plan.destination),
            plan.load_fields,
            truncate=False,
        )

    def finish(self, tables: Tables, plan: TablePlan) -> None:
        """Nothing: every batch was appended when it was committed."""


APPEND = AppendMethod()
