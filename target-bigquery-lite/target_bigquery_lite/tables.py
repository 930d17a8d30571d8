"""BigQuery datasets and tables: create final tables, evolve their schema, make staging tables.

Final tables are created on a stream's first SCHEMA (with the partitioning and clustering
`layout.py` decides); later SCHEMAs evolve them before any
record that needs the new columns is loaded. Staging tables get an expiration of seven days:
a run that crashes cannot leave them behind for ever, and no live batch lives that long.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta

from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from target_bigquery_lite.config import Settings
from target_bigquery_lite.errors import ConfigError, SchemaChangeError
from target_bigquery_lite.identifiers import quote, shown
from target_bigquery_lite.jobs import API_TIMEOUT_SECONDS, JobRunner, object_label
from target_bigquery_lite.layout import Layout, differs, existing_layout
from target_bigquery_lite.partitions import all_partitions_sql
from target_bigquery_lite.schema_evolution import reconcile

STAGING_EXPIRATION = timedelta(days=7)
SCHEMA_UPDATE_TRIES = 5
STREAM_LABEL = "bqlite_stream"
"""Table label: a digest of the name of the stream the table was created for."""

log = logging.getLogger("target_bigquery_lite")


def staging_table_name(run_id: str, batch: int, table: str) -> str:
    """The per-batch staging table of `table` (deterministic, so retries reuse it)."""
    return f"_bqlite_stage_{run_id}_{batch:06d}_{object_label(table)}"


def run_table_name(run_id: str, table: str) -> str:
    """The table that collects a run's batches of `table` until the end of the run."""
    return f"_bqlite_overwrite_{run_id}_{object_label(table)}"


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

    def table_ref(self, name: str) -> bigquery.TableReference:
        """A reference to table `name` of the dataset."""
        return bigquery.DatasetReference(self.project, self.dataset).table(name)

    def ensure_dataset(self) -> str | None:
        """Look the dataset up, and create it only when it is missing; return its location.

        Creating needs `bigquery.datasets.create`, which the least-privilege setup (BigQuery
        Data Editor on the dataset) lacks, so an existing dataset is never created again.

        Raises:
            ConfigError: when the dataset exists in another location than `location`.
        """
        reference = f"{self.project}.{self.dataset}"

        def get() -> bigquery.Dataset | None:
            try:
                return self.client.get_dataset(reference, retry=None, timeout=API_TIMEOUT_SECONDS)
            except api_exceptions.NotFound:
                return None

        existing = self.runner.call(f"get dataset {reference}", get)
        if existing is not None:
            found = existing.location
            if self.location and found and found.lower() != self.location.lower():
                raise ConfigError(
                    f"config: dataset {reference} is in location {found}, but 'location' is "
                    f"{self.location}; set location to {found} or use another dataset"
                )
            return found
        dataset = bigquery.Dataset(reference)
        if self.location:
            dataset.location = self.location
        created = self.runner.call(
            f"create dataset {reference}",
            lambda: self.client.create_dataset(
                dataset, exists_ok=True, retry=None, timeout=API_TIMEOUT_SECONDS
            ),
        )
        where = created.location or self.location
        log.info(
            "created dataset %s in %s (project %s)",
            self.dataset,
            where or "BigQuery's default location (set 'location' to choose one)",
            self.project,
        )
        return where

    def ensure_table(
        self,
        name: str,
        wanted: tuple[SchemaField, ...],
        layout: Layout,
        *,
        expires: bool = False,
        stream: str | None = None,
    ) -> tuple[SchemaField, ...]:
        """Create the table, or evolve it so every wanted column fits; return its fields.

        A final table (`stream` given) is labelled with a digest of the stream's name when
        created: a later stream whose name folds to the same table is refused (a table from
        an earlier version gets the label now). Updates are conditional on the table's etag,
        so two runs evolving one table at once (a parallel backfill) retry on the newer schema
        instead of failing or overwriting each other's change.

        Raises:
            SchemaChangeError: for an incompatible change, a table of another stream, or a
                change BigQuery did not apply.
        """
        table_id = self.table_id(name)
        for attempt in range(SCHEMA_UPDATE_TRIES):
            existing = self._get(table_id)
            if existing is None:
                created = self._create(table_id, wanted, layout, expires=expires, stream=stream)
                if created is not None:
                    return reconcile(tuple(created.schema), wanted, table_id).fields
                continue  # another run created it meanwhile: evolve that one
            managed = _check_owner(existing, stream, table_id)
            if stream is not None and attempt == 0:
                _warn_if_layout_differs(existing, layout, table_id)
            evolution = reconcile(tuple(existing.schema), wanted, table_id, managed=managed)
            adopt = stream is not None and not managed
            if not evolution.changes and not adopt:
                return evolution.fields
            existing.schema = list(evolution.fields)
            changed = ["schema"]
            if adopt:
                existing.labels = {**existing.labels, STREAM_LABEL: stream_label(stream)}
                changed.append("labels")
            updated = self._update(existing, changed)
            if updated is None:
                log.info(
                    "table %s was changed by another run meanwhile: evolving it again", shown(name)
                )
                continue
            _check_applied(table_id, tuple(updated.schema), evolution.fields)
            if evolution.changes:
                log.info("table %s: %s", shown(table_id), "; ".join(evolution.changes))
            return evolution.fields
        raise SchemaChangeError(
            f"table {table_id} kept changing while its schema was updated "
            f"({SCHEMA_UPDATE_TRIES} tries); rerun the target"
        )

    def _create(
        self,
        table_id: str,
        wanted: tuple[SchemaField, ...],
        layout: Layout,
        *,
        expires: bool,
        stream: str | None,
    ) -> bigquery.Table | None:
        """Create the table; None if it exists already (created by someone else meanwhile)."""
        table = bigquery.Table(table_id, schema=list(wanted))
        layout.apply(table)
        if expires:
            table.expires = datetime.now(UTC) + STAGING_EXPIRATION
        if stream is not None:
            table.labels = {STREAM_LABEL: stream_label(stream)}

        def create() -> bigquery.Table | None:
            try:
                return self.client.create_table(table, retry=None, timeout=API_TIMEOUT_SECONDS)
            except api_exceptions.Conflict:
                return None

        created = self.runner.call(f"create table {table_id}", create)
        if created is not None:
            log.info("created table %s (%s)", shown(table_id), layout.describe())
        return created

    def _update(self, table: bigquery.Table, changed: list[str]) -> bigquery.Table | None:
        """Update `changed` properties if the table's etag still matches; None if it changed."""

        def update() -> bigquery.Table | None:
            try:
                return self.client.update_table(
                    table, changed, retry=None, timeout=API_TIMEOUT_SECONDS
                )
            except api_exceptions.PreconditionFailed:
                return None

        return self.runner.call(f"update {', '.join(changed)} of {table.table_id}", update)

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

    def layout_of(self, name: str) -> Layout:
        """The layout table `name` has (a plain one if it does not exist)."""
        table = self._get(self.table_id(name))
        return existing_layout(table) if table is not None else Layout()

    def get(self, name: str) -> bigquery.Table | None:
        """Table (or view) `name` of the dataset as BigQuery describes it; None if missing."""
        return self._get(self.table_id(name))

    def _get(self, table_id: str) -> bigquery.Table | None:
        def get() -> bigquery.Table | None:
            try:
                return self.client.get_table(table_id, retry=None, timeout=API_TIMEOUT_SECONDS)
            except api_exceptions.NotFound:
                return None

        return self.runner.call(f"get table {table_id}", get)


def whole_table_filter(tables: Tables, name: str) -> str | None:
    """A filter admitting every row, if table `name` requires a partition filter."""
    partition = tables.layout_of(name).partition
    if partition is None or not partition.required:
        return None
    return all_partitions_sql(quote(partition.name), partition.kind)


def stream_label(stream: str) -> str:
    """The `STREAM_LABEL` value for a stream: label values hold only [a-z0-9_-], <= 63."""
    return hashlib.sha256(stream.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _check_owner(table: bigquery.Table, stream: str | None, table_id: str) -> bool:
    """Whether the table carries a stream label; refuse one carrying another stream's.

    Raises:
        SchemaChangeError: when the table was created for another stream.
    """
    label = (table.labels or {}).get(STREAM_LABEL)
    if stream is not None and label is not None and label != stream_label(stream):
        raise SchemaChangeError(
            f"table {table_id} was created for another stream (label {STREAM_LABEL}={label}), "
            f"not for stream '{shown(stream)}', whose name becomes the same table name; give "
            "each stream its own table (table_prefix, or rename one with a stream map)"
        )
    return label is not None


def _warn_if_layout_differs(table: bigquery.Table, configured: Layout, table_id: str) -> None:
    """An existing table keeps its layout; say so when the configuration asks for another."""
    existing = existing_layout(table)
    if differs(existing, configured):
        log.warning(
            "table %s exists with layout %s, not the configured %s: it keeps its own (BigQuery "
            "cannot change it in place; recreate the table to change it)",
            shown(table_id),
            existing.describe(),
            configured.describe(),
        )


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
