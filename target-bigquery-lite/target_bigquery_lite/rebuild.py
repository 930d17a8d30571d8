"""`target-bigquery-lite rebuild`: reload a table from its Cloud Storage archive, atomically.

The archive is what `gcs_keep_objects: true` leaves: every batch's objects, named and
described by `gcs_archive`. A rebuild replays them as the target committed them:

1. list the table's objects for the days asked (`--from`/`--to`, inclusive);
2. order them: runs by their first object's creation time, then by batch number;
3. merge tables: consecutive objects of one run with the same load plan form a group; each
   group is loaded into an expiring staging table and MERGEd into a build table on the key
   columns, the latest arrival winning: the target's own MERGE. Objects that a killed run
   uploaded but never committed are included harmlessly: the next run re-sent those rows,
   and its later MERGE wins. Append tables: all objects are loaded in one job, one
   wildcard URI per day (`dt=<day>/*.jsonl`), since nothing needs ordering;
4. the build table replaces the destination (`--into`, default the table itself) in one
   transaction (readers see the old rows or the new ones), after creating it if missing
   with the configured partitioning and clustering;
5. print the objects, bytes and rows read, and the rows the table holds.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from google.api_core import exceptions as api_exceptions
from google.cloud.bigquery import SchemaField

from target_bigquery_lite.columns import SEQUENCE_COLUMN, SEQUENCE_FIELD
from target_bigquery_lite.config import Settings, load_settings
from target_bigquery_lite.connection import make_client
from target_bigquery_lite.errors import ConfigError, TargetError, describe
from target_bigquery_lite.gcs_archive import ArchivedObject, gs_uri, list_archive, table_prefix
from target_bigquery_lite.gcs_staging import CloudStorageError, make_storage_client
from target_bigquery_lite.identifiers import IdentifierError, quote_table
from target_bigquery_lite.jobs import API_TIMEOUT_SECONDS, JobRunner, object_label
from target_bigquery_lite.layout import Layout, table_layout
from target_bigquery_lite.load import load_uris
from target_bigquery_lite.load_methods.merge import build_merge_sql
from target_bigquery_lite.load_methods.overwrite import build_replace_sql
from target_bigquery_lite.schema_evolution import reconcile
from target_bigquery_lite.tables import Tables

MAX_URIS_PER_JOB = 10_000  # BigQuery's limit of source URIs in one load job

log = logging.getLogger("target_bigquery_lite")


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild read and wrote."""

    table: str
    objects: int
    runs: int
    bytes: int
    rows_loaded: int
    rows: int
    first_day: date
    last_day: date

    def describe(self) -> str:
        """The one line `rebuild` prints."""
        return (
            f"rebuilt {self.table} from {self.objects:,} objects of {self.runs:,} runs "
            f"({self.first_day}..{self.last_day}, {self.bytes:,} bytes): "
            f"{self.rows_loaded:,} rows loaded, {self.rows:,} rows in the table"
        )


def rebuild(
    settings: Settings,
    table: str,
    *,
    first: date | None = None,
    last: date | None = None,
    into: str | None = None,
) -> RebuildReport:
    """Rebuild `table` (or a fresh table `into`) from the archived objects of `table`.

    Raises:
        ConfigError: for a missing bucket setting, a bad table name, or a partial rebuild
            that would overwrite the live table.
        CloudStorageError: when the archive cannot be listed.
        TargetError: when the archive is empty or not rebuildable, or a BigQuery job fails.
    """
    if settings.gcs_bucket is None:
        raise ConfigError("rebuild: the config has no gcs_bucket (the archive's bucket)")
    destination = into or table
    for name in (table, destination):
        try:
            quote_table(settings.project, settings.dataset, name)
        except IdentifierError as exc:
            raise ConfigError(f"rebuild: {exc}") from None
    if not settings.gcs_keep_objects:
        log.warning("gcs_keep_objects is false: objects deleted after commit are not rebuilt")
    objects, skipped = _list(settings, table, first, last)
    job = Rebuild(settings, table, objects)
    if (first or last) and destination == table and job.existing(table) is not None:
        raise ConfigError(
            f"rebuild: --from/--to would replace all of {table} with those days only; "
            "rebuild them into another table with --into NAME"
        )
    rows_loaded, rows = job.run(destination, wildcards=not skipped)
    return RebuildReport(
        table=f"{settings.dataset}.{destination}",
        objects=len(objects),
        runs=len({item.run_id for item in objects}),
        bytes=sum(item.size for item in objects),
        rows_loaded=rows_loaded,
        rows=rows,
        first_day=first or min(item.day for item in objects),
        last_day=last or max(item.day for item in objects),
    )


def _list(
    settings: Settings, table: str, first: date | None, last: date | None
) -> tuple[list[ArchivedObject], list[str]]:
    """The table's objects in the order their batches were committed, and names skipped."""
    assert settings.gcs_bucket is not None
    client = make_storage_client(settings)
    try:
        objects, skipped = list_archive(
            client, settings.gcs_bucket, settings.gcs_prefix, table, first=first, last=last
        )
    except Exception as exc:  # an API error, or Cloud Storage unreachable
        raise CloudStorageError(
            f"cannot list gs://{settings.gcs_bucket}: {describe(exc)}"
        ) from None
    finally:
        client.close()
    for name in skipped:
        log.warning("skipping %s: not an object of the target's archive", name)
    where = gs_uri(settings.gcs_bucket, table_prefix(settings.gcs_prefix, table))
    if not objects:
        raise TargetError(f"rebuild: no archived objects under {where}* in the days asked")
    if any(item.method == "overwrite" for item in objects):
        raise TargetError(
            f"rebuild: {where}* holds objects of an overwrite stream (each run a full "
            "snapshot); rebuild supports merge and append tables"
        )
    started: dict[str, datetime] = {}
    for item in objects:
        started[item.run_id] = min(started.get(item.run_id, item.created), item.created)
    objects.sort(key=lambda o: (started[o.run_id], o.run_id, o.batch, o.part))
    return objects, skipped


class Rebuild:
    """The BigQuery side of one rebuild: a build table, filled, then swapped in."""

    def __init__(self, settings: Settings, table: str, objects: list[ArchivedObject]) -> None:
        """Prepare to rebuild from `objects` (in commit order) of `table`'s archive."""
        assert settings.gcs_bucket is not None
        self.settings = settings
        self.bucket = settings.gcs_bucket
        self.table = table
        self.objects = objects
        self.run_id = f"rebuild_{datetime.now(UTC):%Y%m%d%H%M%S}_{uuid.uuid4().hex[:8]}"
        runner = JobRunner(make_client(settings), self.run_id, settings.max_retries)
        self.tables = Tables(runner, settings)

    def existing(self, name: str) -> tuple[SchemaField, ...] | None:
        """The columns of table `name`, or None if it does not exist."""
        table_id = self.tables.table_id(name)

        def get() -> tuple[SchemaField, ...] | None:
            try:
                table = self.tables.client.get_table(
                    table_id, retry=None, timeout=API_TIMEOUT_SECONDS
                )
            except api_exceptions.NotFound:
                return None
            return tuple(table.schema)

        return self.tables.runner.call(f"get table {table_id}", get)

    def run(self, destination: str, *, wildcards: bool) -> tuple[int, int]:
        """Fill a build table, replace `destination` with it; (rows loaded, rows in table)."""
        tables, project, dataset = self.tables, self.tables.project, self.tables.dataset
        fields = self._table_fields()
        build = f"_bqlite_{self.run_id}_{object_label(destination)}"
        tables.ensure_table(build, fields, Layout(), expires=True)
        try:
            if all(item.method == "append" for item in self.objects):
                loaded = self._load_appended(build, fields, wildcards=wildcards)
            else:
                loaded = self._replay(build)
            tables.ensure_table(
                destination, fields, table_layout(fields, self.settings, destination)
            )
            sql = build_replace_sql(
                quote_table(project, dataset, destination),
                quote_table(project, dataset, build),
                [field.name for field in fields],
            )
            tables.runner.query("replace", sql)
        finally:
            tables.drop(build)
        count = tables.runner.query(
            "count", f"SELECT COUNT(*) FROM {quote_table(project, dataset, destination)}"
        )
        return loaded, next(iter(count.result()))[0]

    def _table_fields(self) -> tuple[SchemaField, ...]:
        """The rebuilt table's columns: every object's, evolved as the target evolved them."""
        fields: tuple[SchemaField, ...] | None = None
        for item in self.objects:
            wanted = tuple(f for f in self._fields_of(item) if f.name != SEQUENCE_COLUMN)
            fields = wanted if fields is None else reconcile(fields, wanted, self.table).fields
        assert fields is not None
        return fields

    def _fields_of(self, item: ArchivedObject) -> tuple[SchemaField, ...]:
        """An object's load schema; the existing table's if its metadata could not hold one."""
        if item.fields is not None:
            return item.fields
        existing = self.existing(self.table)
        if existing is None:
            raise TargetError(
                f"rebuild: {item.name} carries no schema (too large for object metadata) "
                f"and table {self.table} does not exist to take the columns from"
            )
        extra = (SEQUENCE_FIELD,) if item.method == "merge" else ()
        return (*existing, *extra)

    def _load_appended(
        self, build: str, fields: tuple[SchemaField, ...], *, wildcards: bool
    ) -> int:
        """Append tables: every object in one job, by one wildcard URI per day if it can."""
        if wildcards:
            start = table_prefix(self.settings.gcs_prefix, self.table)
            days = sorted({item.day for item in self.objects})
            uris = [gs_uri(self.bucket, f"{start}{day:%Y-%m-%d}/*.jsonl") for day in days]
        else:  # the folders hold other files too: name each object
            uris = [gs_uri(self.bucket, item.name) for item in self.objects]
        return self._load("append", uris, build, fields, truncate=False)

    def _replay(self, build: str) -> int:
        """Merge (and append) groups one after another, as their batches were committed."""
        tables, project, dataset = self.tables, self.tables.project, self.tables.dataset
        loaded = 0
        groups = itertools.groupby(self.objects, key=lambda o: (o.run_id, o.group))
        for number, (_, members) in enumerate(groups, 1):
            group = list(members)
            head, step = group[0], f"{number:06d}"
            fields = self._fields_of(head)
            uris = [gs_uri(self.bucket, item.name) for item in group]
            if head.method != "merge":
                loaded += self._load(f"{step}_append", uris, build, fields, truncate=False)
                continue
            staging = f"_bqlite_stage_{self.run_id}_{step}"
            tables.create_staging(staging, fields)
            loaded += self._load(f"{step}_load", uris, staging, fields, truncate=True)
            sql = build_merge_sql(
                quote_table(project, dataset, build),
                quote_table(project, dataset, staging),
                head.keys,
                [field.name for field in fields if field.name != SEQUENCE_COLUMN],
            )
            tables.runner.query(f"{step}_merge", sql)
            tables.drop(staging)
            log.info("rebuild: run %s, %d object(s) merged", head.run_id, len(group))
        return loaded

    def _load(
        self,
        name: str,
        uris: list[str],
        table: str,
        fields: tuple[SchemaField, ...],
        *,
        truncate: bool,
    ) -> int:
        """Load `uris` in jobs of at most `MAX_URIS_PER_JOB` (the first may truncate)."""
        rows = 0
        for index in range(0, len(uris), MAX_URIS_PER_JOB):
            job = load_uris(
                self.tables.runner,
                f"{name}_{index // MAX_URIS_PER_JOB}",
                uris[index : index + MAX_URIS_PER_JOB],
                self.tables.table_ref(table),
                fields,
                truncate=truncate and index == 0,
            )
            rows += job.output_rows or 0
        return rows


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None


def main(argv: list[str]) -> int:
    """`rebuild --config CONFIG --table NAME [--from DAY] [--to DAY] [--into NAME]`."""
    parser = argparse.ArgumentParser(
        prog="target-bigquery-lite rebuild",
        description="Reload a table from its archived Cloud Storage objects (gcs_keep_objects), "
        "deduplicated by key as its MERGE did, and replace it atomically.",
    )
    parser.add_argument("--config", type=Path, required=True, help="the target's JSON config")
    parser.add_argument("--table", required=True, help="the table whose archive to reload")
    parser.add_argument("--from", dest="first", type=_day, help="first day (dt=) to read")
    parser.add_argument("--to", dest="last", type=_day, help="last day (dt=) to read")
    parser.add_argument("--into", help="build this table instead of replacing --table")
    args = parser.parse_args(argv)
    try:
        settings, warnings = load_settings(args.config)
        for warning in warnings:
            log.warning(warning)
        report = rebuild(settings, args.table, first=args.first, last=args.last, into=args.into)
    except TargetError as exc:
        log.error("%s", exc)
        return exc.exit_code
    print(report.describe(), flush=True)
    return 0
