"""The shape of a load method: what it is asked, what it fixes, what it does.

`TableRequest` in, `TablePlan` out, `LoadMethod` the protocol; see the package docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from google.cloud.bigquery import SchemaField

if TYPE_CHECKING:
    from target_bigquery_lite.layout import Layout, PartitionColumn
    from target_bigquery_lite.stage import StagedFile
    from target_bigquery_lite.tables import Tables


@dataclass(frozen=True)
class TableRequest:
    """What a stream asks of its tables: the input of `LoadMethod.prepare`."""

    stream: str
    table: str
    wanted: tuple[SchemaField, ...]
    keys: tuple[str, ...]
    layout: Layout
    run_id: str
    merge_update: bool = True
    bookmarks: tuple[str, ...] = ()
    """The replication key's columns (the SCHEMA's `bookmark_properties`)."""


@dataclass(frozen=True)
class TablePlan:
    """How the committer loads one stream's batches: fixed when its tables are prepared.

    `table_fields` are the final table's columns once every wanted one fits (spelled as the
    table spells them); `load_fields` the schema of each batch's load job; `destination`
    the table those loads go to. `partition`: the column whose bounds the runner tracks
    per batch (see `layout.tracked_partition`); `filter_merges`: whether statements on
    the table restrict it to those bounds; `merge_update`: false for insert-only MERGEs.
    """

    stream: str
    table: str
    method: LoadMethod
    keys: tuple[str, ...]
    table_fields: tuple[SchemaField, ...]
    load_fields: tuple[SchemaField, ...]
    destination: str
    run_id: str
    partition: PartitionColumn | None = None
    filter_merges: bool = False
    merge_update: bool = True


class LoadMethod(Protocol):
    """One way of committing a stream's batches (see the module docstring)."""

    name: str
    sequenced: bool
    sequenced_across_runs: bool
    commits_at_end: bool

    def check_keys(self, stream: str, keys: tuple[SchemaField, ...]) -> None:
        """Refuse key columns this method cannot use (raises `InputError`)."""

    def prepare(self, tables: Tables, request: TableRequest) -> TablePlan:
        """Create or evolve the stream's table(s); return the plan for its batches."""

    def commit(self, tables: Tables, plan: TablePlan, staged: StagedFile, batch: int) -> None:
        """Make one batch's staged rows part of the stream's table(s), atomically."""

    def finish(self, tables: Tables, plan: TablePlan) -> None:
        """End-of-run work after the last batch of a run that succeeded."""
