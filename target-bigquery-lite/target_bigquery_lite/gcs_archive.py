"""The Cloud Storage layout of staged batches: object names, their metadata, listing by day.

An object holds one table's rows of one batch, as the staging file had them:

    <gcs_prefix><table>/dt=<YYYY-MM-DD>/<run id>-<batch:06d>-<n>.jsonl

`dt` (hive style) is the UTC day the batch was committed, so BigQuery external tables and
other tools can read the archive by prefix, and `rebuild --from/--to` lists only the days
it needs. The run id is new for every run, so a name is never reused: a rerun after a
crash writes new objects, and a load job that names its batch's objects cannot read an
earlier run's leftovers. Each object's metadata says how its batch was loaded (method,
key columns, the load job's schema, rows), which is all `rebuild` needs besides the rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from google.cloud.bigquery import SchemaField

if TYPE_CHECKING:
    from google.cloud import storage

MAX_OBJECT_NAME_BYTES = 1024
# Custom metadata may total 8 KiB per object; a schema larger than this is left out.
MAX_SCHEMA_METADATA_BYTES = 6 * 1024
META_METHOD = "bqlite-method"
META_KEYS = "bqlite-keys"
META_ROWS = "bqlite-rows"
META_SCHEMA = "bqlite-schema"
_FILE_RE = re.compile(r"^(?P<run>.+)-(?P<batch>\d{6,})-(?P<part>\d+)\.jsonl$")


def table_prefix(prefix: str, table: str) -> str:
    """Where a table's objects start: `<gcs_prefix><table>/dt=`."""
    return f"{prefix}{table}/dt="


def object_name(prefix: str, table: str, day: date, *, run_id: str, batch: int, part: int) -> str:
    """The name of part `part` of `table`'s rows in batch `batch` of run `run_id`."""
    return f"{table_prefix(prefix, table)}{day:%Y-%m-%d}/{run_id}-{batch:06d}-{part}.jsonl"


def gs_uri(bucket: str, name: str) -> str:
    """`gs://bucket/name`, as load jobs take it."""
    return f"gs://{bucket}/{name}"


def object_metadata(
    method: str, keys: tuple[str, ...], fields: tuple[SchemaField, ...], rows: int
) -> dict[str, str]:
    """The metadata an object carries: how its batch was loaded.

    The schema is left out when it would not fit GCS's 8 KiB of custom metadata;
    `rebuild` then takes the columns from the existing table.
    """
    metadata = {META_METHOD: method, META_KEYS: json.dumps(list(keys)), META_ROWS: str(rows)}
    schema = json.dumps([field.to_api_repr() for field in fields], separators=(",", ":"))
    if len(schema.encode()) <= MAX_SCHEMA_METADATA_BYTES:
        metadata[META_SCHEMA] = schema
    return metadata


@dataclass(frozen=True)
class ArchivedObject:
    """One staged object of a table, as listed."""

    name: str
    day: date
    run_id: str
    batch: int
    part: int
    size: int
    created: datetime
    method: str | None
    keys: tuple[str, ...]
    fields: tuple[SchemaField, ...] | None

    @property
    def group(self) -> tuple[str | None, tuple[str, ...], str | None]:
        """What must be equal for objects to load with one job: method, keys and columns."""
        columns = (
            None if self.fields is None else json.dumps([f.to_api_repr() for f in self.fields])
        )
        return self.method, self.keys, columns


def parse_object(prefix: str, table: str, blob: storage.Blob) -> ArchivedObject | None:
    """An object of the table's archive, or None for a name that is not one of ours."""
    name, meta = blob.name, blob.metadata or {}
    start = table_prefix(prefix, table)
    if not name.startswith(start):
        return None
    day_text, _, file_name = name[len(start) :].partition("/")
    found = _FILE_RE.fullmatch(file_name)
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        return None
    if found is None or "/" in file_name:
        return None
    schema = meta.get(META_SCHEMA)
    fields = (
        tuple(SchemaField.from_api_repr(field) for field in json.loads(schema)) if schema else None
    )
    return ArchivedObject(
        name=name,
        day=day,
        run_id=found["run"],
        batch=int(found["batch"]),
        part=int(found["part"]),
        size=blob.size or 0,
        created=blob.time_created or datetime.fromtimestamp(0, UTC),
        method=meta.get(META_METHOD),
        keys=tuple(json.loads(meta.get(META_KEYS) or "[]")),
        fields=fields,
    )


def list_archive(
    client: storage.Client,
    bucket: str,
    prefix: str,
    table: str,
    *,
    first: date | None = None,
    last: date | None = None,
) -> tuple[list[ArchivedObject], list[str]]:
    """The table's objects from day `first` to day `last` (inclusive), and names skipped.

    Names sort by day, so the listing starts and ends at the range's bounds (`startOffset`,
    `endOffset`) instead of reading the whole archive.
    """
    start = table_prefix(prefix, table)
    offsets: dict[str, str] = {}
    if first is not None:
        offsets["start_offset"] = f"{start}{first:%Y-%m-%d}/"
    if last is not None:
        offsets["end_offset"] = f"{start}{last + timedelta(days=1):%Y-%m-%d}/"
    found: list[ArchivedObject] = []
    skipped: list[str] = []
    for blob in client.list_blobs(bucket, prefix=start, **offsets):
        item = parse_object(prefix, table, blob)
        if item is None or (first and item.day < first) or (last and item.day > last):
            skipped.append(blob.name)
        else:
            found.append(item)
    return found, skipped
