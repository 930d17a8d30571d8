"""BigQuery datasets and tables: create final tables, evolve their schema, make staging tables.

Final tables are created on a stream's first SCHEMA (with time partitioning and clustering
when configured and the stream has those columns); later SCHEMAs evolve them before any
record that needs the new columns is loaded. Staging tables get an expiration of seven days:
a run that crashes cannot leave them behind for ever, and no live batch lives that long.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from target_bigquery_lite.config import Settings
from target_bigquery_lite.errors import SchemaChangeError
from target_bigquery_lite.identifiers import column_name
from target_bigquery_lite.jobs import API_TIMEOUT_SECONDS, JobRunner
from target_bigquery_lite.schema_evolution import canonical, reconcile

STAGING_EXPIRATION = timedelta(days=7)
PARTITION_TYPES = frozenset({"TIMESTAMP", "DATE", "DATETIME"})
CLUSTER_TYPES = frozenset({"INT64", "STRING", "BOOL", "DATE", "TIMESTAMP", "DATETIME", "NUMERIC"})

log = logging.getLogger("target_bigquery_lite")


@dataclass(frozen=True)
class Layout:
    """How a new final table is partitioned and clustered."""

    partition_field: str | None = None
    cluster_fields: tuple[str, ...] = ()


def table_layout(fields: tuple[SchemaField, ...], settings: Settings, stream: str) -> Layout:
    """The partitioning and clustering a new table for this stream gets.

    A stream without the configured columns gets a plain table (with a warning), so one
    setting can serve a tap with many streams.

    Raises:
        SchemaChangeError: when a configured column exists with a type that cannot be used.
    """
    by_name = {field.name.lower(): canonical(field) for field in fields}
    partition = None
    if settings.partition_field:
        field = by_name.get(column_name(settings.partition_field).lower())
        if field is None:
            log.warning(
                "stream '%s' has no column %s: table not partitioned",
                stream,
                settings.partition_field,
            )
        elif field.field_type not in PARTITION_TYPES or field.mode == "REPEATED":
            raise SchemaChangeError(
                f"partition_field {field.name} of stream '{stream}' is {field.field_type} "
                f"{field.mode}; time partitioning needs TIMESTAMP, DATE or DATETIME"
            )
        else:
            partition = field.name
    cluster = tuple(by_name.get(column_name(name).lower()) for name in settings.cluster_fields)
    if any(field is None for field in cluster):
        if cluster:
            log.warning("stream '%s' lacks some cluster_fields: table not clustered", stream)
        return Layout(partition)
    for field in cluster:
        assert field is not None
        if field.field_type not in CLUSTER_TYPES or field.mode == "REPEATED":
            raise SchemaChangeError(
                f"cluster field {field.name} of stream '{stream}' is {field.field_type} "
                f"{field.mode}, which BigQuery cannot cluster on"
            )
    return Layout(partition, tuple(field.name for field in cluster if field is not None))


class Tables:
    """Table operations in the configured dataset, each retried by the job runner."""

    def __init__(self, runner: JobRunner, settings: Settings) -> None:
        """Work in `settings.project`.`settings.dataset`."""
        self.runner = runner
        self.client = runner.client
        self.project = settings.project
        self.dataset = settings.dataset
        self.location = settings.location

    def table_id(self, name: str) -> str:
        """`project.dataset.name`, as the client API wants it."""
        return f"{self.project}.{self.dataset}.{name}"

    def ensure_dataset(self) -> None:
        """Create the dataset if it does not exist yet."""
        dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
        if self.location:
            dataset.location = self.location
        self.runner.call(
            f"create dataset {self.dataset}",
            lambda: self.client.create_dataset(
                dataset, exists_ok=True, retry=None, timeout=API_TIMEOUT_SECONDS
            ),
        )

    def ensure_table(
        self, name: str, wanted: tuple[SchemaField, ...], layout: Layout, *, expires: bool = False
    ) -> tuple[SchemaField, ...]:
        """Create the table, or evolve it so every wanted column fits; return its fields.

        Raises:
            SchemaChangeError: for an incompatible change, or one BigQuery did not apply.
        """
        table_id = self.table_id(name)
        existing = self._get(table_id)
        if existing is None:
            table = bigquery.Table(table_id, schema=list(wanted))
            if layout.partition_field:
                table.time_partitioning = bigquery.TimePartitioning(field=layout.partition_field)
            if layout.cluster_fields:
                table.clustering_fields = list(layout.cluster_fields)
            if expires:
                table.expires = datetime.now(UTC) + STAGING_EXPIRATION
            created = self.runner.call(
                f"create table {table_id}",
                lambda: self.client.create_table(
                    table, exists_ok=True, retry=None, timeout=API_TIMEOUT_SECONDS
                ),
            )
            log.info("created table %s", table_id)
            return reconcile(tuple(created.schema), wanted, table_id).fields
        evolution = reconcile(tuple(existing.schema), wanted, table_id)
        if evolution.changes:
            existing.schema = list(evolution.fields)
            updated = self.runner.call(
                f"update schema of {table_id}",
                lambda: self.client.update_table(
                    existing, ["schema"], retry=None, timeout=API_TIMEOUT_SECONDS
                ),
            )
            _check_applied(table_id, tuple(updated.schema), evolution.fields)
            log.info("table %s: %s", table_id, "; ".join(evolution.changes))
        return evolution.fields

    def create_staging(self, name: str, fields: tuple[SchemaField, ...]) -> None:
        """Create (or keep, on a retry) an expiring staging table with these columns."""
        table = bigquery.Table(self.table_id(name), schema=list(fields))
        table.expires = datetime.now(UTC) + STAGING_EXPIRATION
        self.runner.call(
            f"create staging table {name}",
            lambda: self.client.create_table(
                table, exists_ok=True, retry=None, timeout=API_TIMEOUT_SECONDS
            ),
        )

    def extend_expiry(self, name: str) -> None:
        """Push a long-lived staging table's expiration out again (overwrite runs)."""
        table = bigquery.Table(self.table_id(name))
        table.expires = datetime.now(UTC) + STAGING_EXPIRATION
        self.runner.call(
            f"extend expiry of {name}",
            lambda: self.client.update_table(
                table, ["expires"], retry=None, timeout=API_TIMEOUT_SECONDS
            ),
        )

    def drop(self, name: str) -> None:
        """Delete a table; a table already gone is fine (a retry after an ambiguous failure)."""
        self.runner.call(
            f"drop table {name}",
            lambda: self.client.delete_table(
                self.table_id(name), not_found_ok=True, retry=None, timeout=API_TIMEOUT_SECONDS
            ),
        )

    def _get(self, table_id: str) -> bigquery.Table | None:
        def get() -> bigquery.Table | None:
            try:
                return self.client.get_table(table_id, retry=None, timeout=API_TIMEOUT_SECONDS)
            except api_exceptions.NotFound:
                return None

        return self.runner.call(f"get table {table_id}", get)


def _check_applied(table_id: str, actual: tuple, expected: tuple) -> None:
    """Refuse to go on when BigQuery silently ignored part of a schema update."""

    def names(fields: tuple, prefix: str = "") -> set[str]:
        found = set()
        for field in fields:
            found.add(f"{prefix}{field.name.lower()}")
            found |= names(tuple(field.fields), f"{prefix}{field.name.lower()}.")
        return found

    missing = names(expected) - names(actual)
    if missing:
        raise SchemaChangeError(
            f"BigQuery did not apply the schema update of {table_id}: still missing "
            f"{', '.join(sorted(missing))} (adding nested RECORD fields is not supported by "
            "the local emulator)"
        )
