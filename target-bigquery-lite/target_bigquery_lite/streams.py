"""One stream's everything for the current SCHEMA: columns, validator, renames, load plan, staging.

`Stream.stage` is the per-record hot path: validate (compiled), check key properties,
rename keys if any name needed sanitizing, add the arrival sequence (merge streams only),
serialize once with orjson and append to the stream's staging file. Each optional step costs
nothing when it does not apply, because the decision is made once per SCHEMA, not per record.

`TablePlan` is the immutable snapshot the committer works from, so the main thread can go on
staging the next batch (and even see a new SCHEMA, after draining) while a batch commits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from google.cloud.bigquery import SchemaField

from target_bigquery_lite.config import Settings
from target_bigquery_lite.errors import InputError, RecordError, StagingError
from target_bigquery_lite.identifiers import IdentifierError, column_name, table_name
from target_bigquery_lite.merge import SEQUENCE_COLUMN, VERSION_COLUMN
from target_bigquery_lite.messages import SchemaMessage
from target_bigquery_lite.progress import StreamCounts
from target_bigquery_lite.schema_evolution import load_fields
from target_bigquery_lite.schema_mapping import Renamer, map_schema
from target_bigquery_lite.stage import StageWriter
from target_bigquery_lite.validate import (
    VALIDATION_ERRORS,
    ValidationFailure,
    Validator,
    block_decoder,
    check_schema,
    compile_validator,
    explain,
)

METADATA_FIELDS = (
    SchemaField("_sdc_extracted_at", "TIMESTAMP"),
    SchemaField("_sdc_received_at", "TIMESTAMP"),
)
SEQUENCE_FIELD = SchemaField(SEQUENCE_COLUMN, "INT64")
VERSION_FIELD = SchemaField(VERSION_COLUMN, "INT64")
UNSCALAR_KEY_TYPES = frozenset({"RECORD", "JSON"})
_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE

log = logging.getLogger("target_bigquery_lite")


@dataclass(frozen=True)
class TablePlan:
    """How the committer loads one stream's batch: an immutable snapshot."""

    stream: str
    table: str
    method: str
    keys: tuple[str, ...]
    load_fields: tuple[SchemaField, ...]
    destination: str


@dataclass
class Stream:
    """A stream under its current SCHEMA, with its open staging file (if records are pending)."""

    message: SchemaMessage
    table: str
    method: str
    wanted: tuple[SchemaField, ...]
    key_columns: tuple[str, ...]
    validator: Validator | None
    renamer: Renamer | None
    unchecked_keys: tuple[str, ...]
    metadata: bool
    counts: StreamCounts
    versioned: bool = False
    active_version: int | None = None
    received_at: str = ""
    plan: TablePlan | None = None
    writer: StageWriter | None = None
    flat_decoder: msgspec.json.Decoder | None = field(default=None, repr=False)
    open_writer: Callable[[int], StageWriter] | None = field(default=None, repr=False)

    @property
    def sequenced(self) -> bool:
        """Merge streams stage the arrival order, so the latest record per key wins."""
        return self.method == "merge"

    @property
    def rows_unchanged(self) -> bool:
        """Whether rows are staged as they arrive (no names to sanitize, no columns to add)."""
        return self.renamer is None and not (self.metadata or self.versioned)

    @property
    def raw_batches_ok(self) -> bool:
        """Whether BATCH files can be copied without parsing (nothing to check or rewrite).

        Null keys in such rows are caught by the MERGE itself (see `build_merge_sql`).
        """
        return self.validator is None and self.rows_unchanged

    @property
    def batch_decoder(self) -> msgspec.json.Decoder | None:
        """The decoder checking BATCH rows a block at a time, if rows are staged as they are.

        None: no flat schema (see `validate.block_decoder`), or rows need rewriting; BATCH
        rows are then checked and staged one by one.
        """
        return self.flat_decoder if self.validator is not None and self.rows_unchanged else None

    def all_wanted(self) -> tuple[SchemaField, ...]:
        """The columns this stream's records fill: properties, metadata, version."""
        extra = (METADATA_FIELDS if self.metadata else ()) + (
            (VERSION_FIELD,) if self.versioned else ()
        )
        return self.wanted + extra

    def attach(self, table_fields: tuple[SchemaField, ...], destination: str) -> None:
        """Fix the load plan once the BigQuery table(s) have all wanted columns."""
        if self.sequenced:  # the staging table: this batch's columns plus the arrival order
            fields = (*load_fields(table_fields, self.all_wanted()), SEQUENCE_FIELD)
        else:  # loads go straight into a table, which needs its full schema
            fields = table_fields
        self.plan = TablePlan(
            self.message.stream, self.table, self.method, self.key_columns, fields, destination
        )

    def stage(self, record: dict[str, Any], message: dict[str, Any], seq: int) -> None:
        """Check and append one record to the staging file (the hot path).

        Raises:
            RecordError: naming the stream, the record number, the field and the reason.
        """
        if self.validator is not None:
            try:
                self.validator(record)
            except VALIDATION_ERRORS as failure:
                raise self._invalid(record, failure) from None
        for key in self.unchecked_keys:
            if record.get(key) is None:
                raise RecordError(
                    f"stream '{self.message.stream}', record {self.counts.received + 1}: "
                    f"key property '{key}' is missing or null (a merge needs every key)"
                )
        if self.renamer is not None:
            record = self.renamer(record)
        if self.versioned:
            record[VERSION_COLUMN] = message.get("version", self.active_version)
        if self.metadata:
            record["_sdc_extracted_at"] = message.get("time_extracted")
            record["_sdc_received_at"] = self.received_at
        if self.method == "merge":
            record[SEQUENCE_COLUMN] = seq
        writer = self.writer
        if writer is None:
            assert self.open_writer is not None
            writer = self.writer = self.open_writer(seq)
        try:
            line = orjson.dumps(record, option=_DUMPS_OPTIONS)
        except TypeError:  # beyond orjson: integers over 64 bits, lone surrogates in strings
            line = self._encode_slowly(record)
        try:
            writer.write(line)
        except OSError as exc:
            raise StagingError.writing(writer.path, exc) from None
        writer.rows += 1
        self.counts.received += 1

    def _encode_slowly(self, record: dict[str, Any]) -> bytes:
        r"""One staging line for what orjson refuses, or a clear error if UTF-8 cannot hold it.

        A JSON string may escape half of a UTF-16 surrogate pair (`"\ud800"`): valid JSON,
        but no valid Unicode text, so neither a staging file nor BigQuery can hold it.
        """
        try:
            return json.dumps(record, ensure_ascii=False).encode() + b"\n"
        except UnicodeEncodeError:
            raise RecordError(
                f"stream '{self.message.stream}', record {self.counts.received + 1}: field "
                f"'{_invalid_text_path(record)}' holds a lone UTF-16 surrogate (an escape such "
                "as \\ud800 without its pair), which is not valid Unicode; BigQuery strings "
                "must be valid UTF-8"
            ) from None

    def _invalid(self, record: dict[str, Any], failure: ValidationFailure) -> RecordError:
        reason = explain(self.message.schema, record, failure)
        return RecordError(
            f"stream '{self.message.stream}', record {self.counts.received + 1} violates its "
            f"schema: {reason}"
        )


def _invalid_text_path(value: Any, path: str = "") -> str:
    """The dotted path of the first key or string in `value` that UTF-8 cannot encode."""
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and not key.isascii():
            try:
                key.encode()
            except UnicodeEncodeError:
                return where
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return where
        elif isinstance(item, dict | list) and (found := _invalid_text_path(item, where)):
            return found
    return path


def build_stream(message: SchemaMessage, settings: Settings, counts: StreamCounts) -> Stream:
    """Check and map a SCHEMA message; compile its validator; choose its load method.

    Raises:
        InputError: for an invalid schema, unusable names or key properties.
    """
    stream = message.stream
    check_schema(message.schema, stream)
    mapped = map_schema(message.schema, stream)
    try:
        table = table_name(stream, settings.table_prefix)
    except IdentifierError as exc:
        raise InputError(str(exc)) from None
    by_name = {field.name: field for field in mapped.fields}
    reserved = {SEQUENCE_COLUMN, VERSION_COLUMN}
    if settings.add_metadata_columns:
        reserved |= {meta.name for meta in METADATA_FIELDS}
    clash = sorted(reserved & {name.lower() for name in by_name})
    if clash:
        raise InputError(f"stream '{stream}': property {clash[0]} collides with a target column")
    properties = message.schema.get("properties", {})
    for key in message.key_properties:
        if key not in properties:
            raise InputError(f"stream '{stream}': key property '{key}' is not in its schema")
    key_columns = tuple(column_name(key) for key in message.key_properties)
    method = _load_method(settings, stream, key_columns)
    if method == "merge":
        for key in key_columns:
            key_field = by_name[key]
            if key_field.field_type in UNSCALAR_KEY_TYPES or key_field.mode == "REPEATED":
                raise InputError(
                    f"stream '{stream}': key property {key} maps to {key_field.field_type} "
                    f"{key_field.mode}; a MERGE needs scalar keys"
                )
    validator = compile_validator(message.schema, stream) if settings.validate_records else None
    guaranteed = _guaranteed_keys(message.schema) if validator is not None else set()
    unchecked = tuple(k for k in message.key_properties if k not in guaranteed)
    merge_keys = unchecked if method == "merge" else ()
    return Stream(
        message=message,
        table=table,
        method=method,
        wanted=mapped.fields,
        key_columns=key_columns if method == "merge" else (),
        validator=validator,
        renamer=mapped.renamer,
        unchecked_keys=merge_keys,
        metadata=settings.add_metadata_columns,
        counts=counts,
        flat_decoder=_block_decoder(message.schema, method, merge_keys) if validator else None,
    )


def _load_method(settings: Settings, stream: str, keys: tuple[str, ...]) -> str:
    if settings.load_method is None:
        return "merge" if keys else "append"
    if settings.load_method == "merge" and not keys:
        log.warning("stream '%s' has no key properties: appending instead of merging", stream)
        return "append"
    return settings.load_method


def _block_decoder(
    schema: dict[str, Any], method: str, keys: tuple[str, ...]
) -> msgspec.json.Decoder | None:
    """`validate.block_decoder` for the stream: merges also stage the arrival order."""
    return block_decoder(schema, keys, SEQUENCE_COLUMN if method == "merge" else None)


def _guaranteed_keys(schema: dict[str, Any]) -> set[str]:
    """Properties the validator guarantees present and non-null (required, type excludes null)."""
    properties = schema.get("properties", {})
    guaranteed = set()
    for name in schema.get("required") or ():
        kinds = properties.get(name, {}).get("type") if isinstance(properties, dict) else None
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if isinstance(kinds, list) and kinds and "null" not in kinds:
            guaranteed.add(name)
    return guaranteed
