"""`dedup_view`: append every batch to `<table>_raw`; a view `<table>` shows the latest row per key.

Loads are free in BigQuery, and a MERGE bills the whole table it matches against, so this
method never merges (seed 001). Deduplication is paid at read time instead: every query of
the view reads the raw table and ranks its rows; `target-bigquery-lite compact` removes the
superseded rows from the raw table when they grow.

1. `prepare`: the raw table `<table>_raw`, created or evolved as for every method, with the
   stream's columns plus `_bqlite_seq`, partitioned as configured and clustered on the keys
   unless `cluster_fields` says otherwise; then the view `<table>` over it, created, or
   replaced when its statement changes (a new column, other keys, another replication key);
2. `commit`: one load job appends the batch to the raw table (`append`'s commit); the batch
   is then committed, and the states it covers may go out;
3. the view keeps, per key, the row with the greatest replication key (the SCHEMA's
   `bookmark_properties`; NULL loses), then the greatest `_bqlite_seq`. A stream without
   key properties gets a view of every row.

`_bqlite_seq` is the run's start in microseconds plus the record's arrival number, so later
runs' rows rank above earlier ones' (for runs that stage less than a record a microsecond on
average) and the values stay far below 2^53, beyond which JSON loads need quoted INT64s. A
rerun after a kill appends again what the killed run had loaded: the view still shows one
row per key. The plan's table is the raw table (where rows are committed and old versions
deleted); rows whose key is NULL (only BATCH files staged unread can hold them) form one
group of their own in the view. Only when configured.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from google.cloud.bigquery import SchemaField

from target_bigquery_lite.columns import SEQUENCE_COLUMN, SEQUENCE_FIELD
from target_bigquery_lite.errors import InputError, SchemaChangeError
from target_bigquery_lite.identifiers import quote, quote_table, shown
from target_bigquery_lite.jobs import step_name
from target_bigquery_lite.layout import CLUSTER_TYPES
from target_bigquery_lite.load_methods.append import AppendMethod
from target_bigquery_lite.load_methods.base import TablePlan, TableRequest
from target_bigquery_lite.load_methods.keys import check_partition_keys
from target_bigquery_lite.schema_evolution import canonical, canonical_type
from target_bigquery_lite.tables import Tables

if TYPE_CHECKING:
    from target_bigquery_lite.layout import Layout

RAW_SUFFIX = "_raw"
MAX_CLUSTER_KEYS = 4  # BigQuery clusters on at most four columns
UNORDERED_TYPES = frozenset({"RECORD", "STRUCT", "JSON", "GEOGRAPHY"})

log = logging.getLogger("target_bigquery_lite")


def raw_table_name(table: str) -> str:
    """The append-only table behind the view `table`."""
    return f"{table}{RAW_SUFFIX}"


class DedupViewMethod(AppendMethod):
    """Append to the raw table, deduplicate in a view (see the module docstring)."""

    name = "dedup_view"
    sequenced = True
    sequenced_across_runs = True
    commits_at_end = False

    def check_keys(self, stream: str, keys: tuple[SchemaField, ...]) -> None:
        """The view partitions its window by the keys: the same rule as a MERGE's.

        Raises:
            InputError: see `keys.check_partition_keys`.
        """
        check_partition_keys(stream, keys, "the view needs keys BigQuery can partition by")

    def prepare(self, tables: Tables, request: TableRequest) -> TablePlan:
        """The raw table (its full schema for each load), then the view over it."""
        raw = dataclasses.replace(
            request,
            table=raw_table_name(request.table),
            wanted=(*request.wanted, SEQUENCE_FIELD),
            layout=_clustered_on_keys(request),
        )
        plan = super().prepare(tables, raw)
        order = _order_columns(request, plan.table_fields)
        columns = [field.name for field in plan.table_fields if field.name != SEQUENCE_COLUMN]
        query = build_view_query(
            quote_table(tables.project, tables.dataset, plan.table),
            [*columns, SEQUENCE_COLUMN],  # the load sequence last, after columns added later
            request.keys,
            order,
        )
        _ensure_view(tables, request, query)
        return plan


DEDUP_VIEW = DedupViewMethod()


def build_view_query(
    raw: str, columns: Sequence[str], keys: Sequence[str], order: Sequence[str]
) -> str:
    """The view's query over `raw`: every column of the latest row per key (all rows without keys).

    The rows of a key are ranked by the replication key's columns `order`, then by
    `_bqlite_seq`, greatest first (NULL ranks last). `WHERE TRUE`: BigQuery has accepted
    QUALIFY only in a query with a WHERE, GROUP BY or HAVING clause.
    """
    columns_sql = ",\n  ".join(quote(column) for column in columns)
    query = f"SELECT\n  {columns_sql}\nFROM {raw}"
    if not keys:
        return query
    ranking = ", ".join(f"{quote(column)} DESC" for column in (*order, SEQUENCE_COLUMN))
    partition = ", ".join(quote(key) for key in keys)
    return (
        f"{query}\nWHERE TRUE\nQUALIFY ROW_NUMBER() OVER (\n"
        f"  PARTITION BY {partition} ORDER BY {ranking}) = 1"
    )


def _clustered_on_keys(request: TableRequest) -> Layout:
    """The request's layout; without configured clustering, clustered on the keys if it can be.

    Clustering sorts the raw table by key within each partition, so the view's window and
    a compaction read less; BigQuery clusters on at most four columns of certain types.
    """
    if request.layout.cluster_fields or not request.keys or len(request.keys) > MAX_CLUSTER_KEYS:
        return request.layout
    types = {field.name.lower(): canonical(field) for field in request.wanted}
    fields = [types.get(key.lower()) for key in request.keys]
    if any(f is None or f.field_type not in CLUSTER_TYPES or f.mode == "REPEATED" for f in fields):
        return request.layout
    return dataclasses.replace(request.layout, cluster_fields=request.keys)


def _order_columns(request: TableRequest, fields: tuple[SchemaField, ...]) -> tuple[str, ...]:
    """The replication key's columns as the raw table spells them (missing ones skipped).

    Raises:
        InputError: for a replication key BigQuery cannot order by (RECORD, JSON, ARRAY, ...).
    """
    by_name = {field.name.lower(): field for field in fields}
    order = []
    for column in request.bookmarks:
        field = by_name.get(column.lower())
        if field is None:
            log.warning(
                "stream '%s': bookmark property %s is not a column; the view orders by the load "
                "sequence alone",
                shown(request.stream),
                shown(column),
            )
            continue
        kind = canonical_type(field.field_type)
        if kind in UNORDERED_TYPES or field.mode == "REPEATED":
            raise InputError(
                f"stream '{shown(request.stream)}': bookmark property {shown(column)} maps to "
                f"{kind} {field.mode}, which BigQuery cannot order by; the view orders the rows "
                "of a key by it"
            )
        order.append(field.name)
    return tuple(order)


def _ensure_view(tables: Tables, request: TableRequest, query: str) -> None:
    """Create or replace the view `<table>` unless it already has this query.

    Raises:
        SchemaChangeError: when `<table>` is a table, not a view (another method's).
    """
    existing = tables.get(request.table)
    if existing is not None and existing.table_type != "VIEW":
        raise SchemaChangeError(
            f"stream '{shown(request.stream)}': {tables.table_id(request.table)} is a "
            f"{existing.table_type or 'TABLE'}, but load_method dedup_view makes it a view of "
            f"{raw_table_name(request.table)}; drop or rename it (or set table_prefix)"
        )
    if existing is not None and _unspaced(existing.view_query or "") == _unspaced(query):
        return
    view = quote_table(tables.project, tables.dataset, request.table)
    sql = f"CREATE OR REPLACE VIEW {view} AS\n{query}"
    digest = hashlib.sha256(sql.encode()).hexdigest()[:16]  # one job id per statement
    tables.runner.query(step_name(None, request.table, f"view_{digest}"), sql)
    log.info("%s view %s", "replaced" if existing else "created", shown(request.table))


def _unspaced(sql: str) -> str:
    """`sql` without whitespace, to compare: BigQuery may reformat a view's text.

    Every name in the view's query is quoted and holds no whitespace, so no two different
    queries of ours compare equal.
    """
    return "".join(sql.split())
