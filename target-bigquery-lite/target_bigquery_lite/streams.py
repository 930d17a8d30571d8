"""One stream under its current SCHEMA: columns, validator, renames, and the staging line.

`StreamSpec.encode` is the per-record hot path: validate (compiled), check key properties,
rename keys if any name needed sanitizing, add the target's columns (arrival sequence for
sequenced methods, version, metadata), and serialize once with orjson. Each optional step
costs nothing when it does not apply, because the decision is made once per SCHEMA, not per
record. The spec is immutable; what changes while records arrive belongs to the runner.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import msgspec
import orjson
from google.cloud.bigquery import SchemaField

from target_bigquery_lite.columns import (
    METADATA_FIELDS,
    RUN_COLUMN,
    RUN_FIELD,
    SEQUENCE_COLUMN,
    VERSION_COLUMN,
    VERSION_FIELD,
)
from target_bigquery_lite.config import Settings
from target_bigquery_lite.errors import InputError, RecordError
from target_bigquery_lite.identifiers import IdentifierError, column_name, shown, table_name
from target_bigquery_lite.load_methods.base import LoadMethod
from target_bigquery_lite.messages import SchemaMessage
from target_bigquery_lite.schema_mapping import (
    MappedSchema,
    NameTree,
    Renamer,
    is_exact,
    is_number,
    map_schema,
    renamer_for,
)
from target_bigquery_lite.validate import (
    INT64_MAX,
    INT64_MIN,
    VALIDATION_ERRORS,
    ValidationFailure,
    Validator,
    block_decoder,
    check_schema,
    compile_validator,
    explain,
)
from target_bigquery_lite.values import (
    Checker,
    Shaper,
    UnloadableError,
    check_timestamp,
    has_exact_columns,
    shaper_for,
    value_checks,
)

# 53-bit integers: a larger one goes the careful way, which quotes it for INT64 columns.
_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_STRICT_INTEGER
_SLOW_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE

log = logging.getLogger("target_bigquery_lite")


@dataclass(frozen=True)
class StreamSpec:
    """A stream under its current SCHEMA: what its records become, fixed once per SCHEMA.

    Immutable: the runner owns what changes while records arrive (the open staging file,
    the counts, the active version) and replaces the spec when a SCHEMA changes it.
    """

    message: SchemaMessage
    table: str
    method: LoadMethod
    wanted: tuple[SchemaField, ...]
    key_columns: tuple[str, ...]
    validator: Validator | None
    renamer: Renamer | None
    names: NameTree
    unchecked_keys: tuple[str, ...]
    metadata: bool
    run_id: str
    versioned: bool = False
    exact_numbers: bool = False
    # records are parsed keeping every number's own digits (`Decimal`s): the stream has
    # NUMERIC, BIGNUMERIC or JSON columns (decided once: walking the fields is slow)
    exact: bool = False
    seq_base: int = 0
    """Added to each record's arrival number in `_bqlite_seq` (see `LoadMethod`)."""
    flat_decoder: msgspec.json.Decoder | None = field(default=None, repr=False, compare=False)
    shaper: Shaper | None = field(default=None, repr=False, compare=False)
    steps: dict[str, Decimal] = field(default_factory=dict, repr=False, compare=False)
    # (Struct attribute, column, check) when the shaper only checks values (see `values`)
    block_checks: tuple[tuple[str, str, Checker], ...] | None = field(
        default=(), repr=False, compare=False
    )
    careful_shaper: Shaper | None = field(default=None, repr=False, compare=False)
    extracted: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        """The stream's name."""
        return self.message.stream

    @property
    def sequenced(self) -> bool:
        """Whether staged rows carry the arrival order (the latest record per key wins)."""
        return self.method.sequenced

    @property
    def rows_unchanged(self) -> bool:
        """Whether rows are staged as they arrive.

        No names to sanitize, no columns to add, no values to put in BigQuery's form.
        """
        unchanged = self.renamer is None and self.shaper is None
        return unchanged and not (self.metadata or self.versioned)

    @property
    def raw_batches_ok(self) -> bool:
        """Whether BATCH files can be copied without parsing (nothing to check or rewrite).

        Null keys in such rows are caught by the MERGE itself (see `build_merge_sql`).
        """
        return self.validator is None and self._rows_only_checked

    @property
    def batch_decoder(self) -> msgspec.json.Decoder | None:
        """The decoder checking BATCH rows a block at a time, if rows are staged as they are.

        None: no flat schema (see `validate.block_decoder`), or rows need rewriting; BATCH
        rows are then checked and staged one by one. Values that need checking are checked
        on the decoded rows (`block_checks`).
        """
        usable = self.validator is not None and self._rows_only_checked
        return self.flat_decoder if usable else None

    @property
    def _rows_only_checked(self) -> bool:
        """Rows are staged as they arrive, but for checks of their values."""
        if self.renamer is not None or self.metadata or self.versioned:
            return False
        return self.shaper is None or self.block_checks is not None

    @property
    def bookmark_columns(self) -> tuple[str, ...]:
        """The columns of the SCHEMA's `bookmark_properties` (its replication key)."""
        return tuple(column_name(prop) for prop in self.message.bookmark_properties)

    def all_wanted(self) -> tuple[SchemaField, ...]:
        """The columns this stream's records fill: properties, metadata, version."""
        extra = (METADATA_FIELDS if self.metadata else ()) + (
            (VERSION_FIELD, RUN_FIELD) if self.versioned else ()
        )
        return self.wanted + extra

    def spelled_as(self, table_fields: tuple[SchemaField, ...]) -> StreamSpec:
        """The same stream, its records' keys renamed to the table's spelling of each column."""
        renamer = renamer_for(self.names, table_fields)
        if renamer is None and self.renamer is None:
            return self
        spelled = _spelled(self.wanted, table_fields)
        return replace(
            self,
            renamer=renamer,
            shaper=shaper_for(spelled, careful=False, steps=self.steps),
            careful_shaper=shaper_for(spelled, careful=True, steps=self.steps),
        )

    def with_versions(self) -> StreamSpec:
        """The same stream, its records now carrying a `_sdc_table_version` column."""
        return replace(self, versioned=True)

    def encode(  # noqa: PLR0917 - the hot path: positional arguments cost least
        self,
        record: dict[str, Any],
        message: dict[str, Any],
        seq: int,
        number: int,
        received_at: str,
        version: int | None,
    ) -> bytes:
        """Check one record and return its staging line (the hot path).

        `number` is the record's number in its stream (for messages); `version` the
        stream's active version, for records without their own.

        Raises:
            RecordError: naming the stream, the record number, the field and the reason.
        """
        if self.validator is not None:
            try:
                self.validator(record)
            except VALIDATION_ERRORS as failure:
                raise self._invalid(record, failure, number) from None
        for key in self.unchecked_keys:
            if record.get(key) is None:
                raise RecordError(
                    f"stream '{shown(self.message.stream)}', record {number}: "
                    f"key property '{key}' is missing or null (a merge needs every key)"
                )
        if self.renamer is not None:
            record = self.renamer(record)
        if self.shaper is not None:
            record = self._shaped(self.shaper, record, number)
        if self.versioned:
            row_version = message.get("version", version)
            if row_version is None:
                record[RUN_COLUMN] = self.run_id
            elif type(row_version) is not int or not INT64_MIN <= row_version <= INT64_MAX:
                raise RecordError(
                    f"stream '{shown(self.message.stream)}', record {number}: its message's "
                    f"'version' {str(row_version)[:40]!r} is not an INT64 integer"
                )
            record[VERSION_COLUMN] = row_version
        if self.metadata:
            record["_sdc_extracted_at"] = self._extracted_at(message, number)
            record["_sdc_received_at"] = received_at
        if self.method.sequenced:
            record[SEQUENCE_COLUMN] = self.seq_base + seq
        try:
            return orjson.dumps(record, option=_DUMPS_OPTIONS)
        except TypeError:  # integers beyond 2^53, NaN tokens, decimals, lone surrogates
            return self._encode_slowly(record, number)

    def _shaped(self, shaper: Shaper, record: dict[str, Any], number: int) -> dict[str, Any]:
        try:
            return shaper(record)
        except UnloadableError as exc:
            raise RecordError(
                f"stream '{shown(self.message.stream)}', record {number}: {exc}"
            ) from None

    def _extracted_at(self, message: dict[str, Any], number: int) -> Any:
        """The message's `time_extracted`, for a TIMESTAMP column: BigQuery must read it.

        Taps send one value for many records: each distinct value is checked once.
        """
        extracted = message.get("time_extracted")
        if extracted is None or extracted in self.extracted:
            return extracted
        try:
            check_timestamp(extracted, "time_extracted")
        except UnloadableError as exc:
            raise RecordError(
                f"stream '{shown(self.message.stream)}', record {number}: its message's {exc}"
            ) from None
        if len(self.extracted) > 1000:
            self.extracted.clear()
        self.extracted[extracted] = extracted
        return extracted

    def _encode_slowly(self, record: dict[str, Any], number: int) -> bytes:
        r"""One staging line for what orjson refuses, or a clear error if UTF-8 cannot hold it.

        The careful shaper puts what a slowly parsed line may hold in BigQuery's form
        (`values`). A JSON string may escape half of a UTF-16 surrogate pair (`"\ud800"`):
        valid JSON, but no valid Unicode text, so neither a staging file nor BigQuery can
        hold it.
        """
        if self.careful_shaper is not None:
            record = self._shaped(self.careful_shaper, record, number)
        try:
            return orjson.dumps(record, option=_SLOW_DUMPS_OPTIONS)
        except TypeError:
            pass
        try:
            return json.dumps(record, ensure_ascii=False, default=str).encode() + b"\n"
        except UnicodeEncodeError:
            raise RecordError(
                f"stream '{shown(self.message.stream)}', record {number}: field "
                f"'{_invalid_text_path(record)}' holds a lone UTF-16 surrogate (an escape such "
                "as \\ud800 without its pair), which is not valid Unicode; BigQuery strings "
                "must be valid UTF-8"
            ) from None

    def _invalid(
        self, record: dict[str, Any], failure: ValidationFailure, number: int
    ) -> RecordError:
        reason = explain(self.message.schema, record, failure, exact_numbers=self.exact_numbers)
        return RecordError(
            f"stream '{shown(self.message.stream)}', record {number} violates its schema: {reason}"
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


def build_spec(
    message: SchemaMessage,
    settings: Settings,
    choose: Callable[[tuple[str, ...]], LoadMethod],
    run_id: str,
    seq_base: int = 0,
) -> StreamSpec:
    """Check and map a SCHEMA message; compile its validator; take its load method.

    `choose(key_columns)` picks the method (see `load_methods.method_for`); `seq_base` (the
    run's start in microseconds) starts the sequence of methods that order across runs.

    Raises:
        InputError: for an invalid schema, unusable names or key properties.
    """
    stream = message.stream
    check_schema(message.schema, stream)
    mapped = map_schema(message.schema, stream, exact_numbers=settings.exact_numbers)
    try:
        table = table_name(stream, settings.table_prefix)
    except IdentifierError as exc:
        raise InputError(str(exc)) from None
    by_name = {field.name: field for field in mapped.fields}
    reserved = {SEQUENCE_COLUMN, VERSION_COLUMN, RUN_COLUMN}
    if settings.add_metadata_columns:
        reserved |= {meta.name for meta in METADATA_FIELDS}
    clash = sorted(reserved & {name.lower() for name in by_name})
    if clash:
        raise InputError(
            f"stream '{shown(stream)}': property {clash[0]} collides with a target column"
        )
    properties = message.schema.get("properties", {})
    for key in message.key_properties:
        if key not in properties:
            raise InputError(f"stream '{shown(stream)}': key property '{key}' is not in its schema")
    key_columns = tuple(column_name(key) for key in message.key_properties)
    method = choose(key_columns)
    method.check_keys(stream, tuple(by_name[key] for key in key_columns))
    validator = (
        compile_validator(message.schema, stream, exact_numbers=settings.exact_numbers)
        if settings.validate_records
        else None
    )
    guaranteed = _guaranteed_keys(message.schema) if validator is not None else set()
    steps = _exact_steps(message.schema, mapped, settings.exact_numbers)
    unchecked = tuple(k for k in message.key_properties if k not in guaranteed)
    merge_keys = unchecked if method.sequenced else ()
    sequence = SEQUENCE_COLUMN if method.sequenced else None
    return StreamSpec(
        message=message,
        table=table,
        method=method,
        wanted=mapped.fields,
        key_columns=key_columns if method.sequenced else (),
        validator=validator,
        renamer=mapped.renamer,
        names=mapped.names,
        unchecked_keys=merge_keys,
        metadata=settings.add_metadata_columns,
        run_id=run_id,
        exact_numbers=settings.exact_numbers,
        exact=has_exact_columns(mapped.fields),
        seq_base=seq_base if method.sequenced_across_runs else 0,
        flat_decoder=block_decoder(message.schema, merge_keys, sequence) if validator else None,
        steps=steps,
        shaper=shaper_for(mapped.fields, careful=False, steps=steps),
        block_checks=_block_checks(message.schema, mapped.fields),
        careful_shaper=shaper_for(mapped.fields, careful=True, steps=steps),
    )


def _exact_steps(
    schema: dict[str, Any], mapped: MappedSchema, exact_numbers: bool
) -> dict[str, Decimal]:
    """The `multipleOf` of each top-level exact property, by lower-case column name."""
    steps = {}
    for name, prop in (schema.get("properties") or {}).items():
        step = prop.get("multipleOf") if isinstance(prop, dict) else None
        usable = is_number(step) and step > 0
        if usable and is_exact(prop, exact_numbers) and name in mapped.names:
            steps[mapped.names[name][0].lower()] = Decimal(repr(step))
    return steps


def _block_checks(
    schema: dict[str, Any], fields: tuple[SchemaField, ...]
) -> tuple[tuple[str, str, Checker], ...] | None:
    """The value checks as (attribute of `validate.flat_struct`'s Struct, column, check)."""
    checks = value_checks(fields)
    if checks is None:
        return None
    position = {name: index for index, name in enumerate(schema.get("properties") or {})}
    if any(name not in position for name, _ in checks):
        return None
    return tuple((f"f{position[name]}", name, check) for name, check in checks)


def _spelled(
    fields: tuple[SchemaField, ...], table_fields: tuple[SchemaField, ...] | list[SchemaField]
) -> tuple[SchemaField, ...]:
    """`fields` named as the table spells them (BigQuery names are case-insensitive)."""
    spelled = {column.name.lower(): column for column in table_fields}
    renamed = []
    for column in fields:
        table_field = spelled.get(column.name.lower())
        if table_field is None:
            renamed.append(column)
            continue
        api = column.to_api_repr()
        api["name"] = table_field.name
        if column.fields:
            inner = _spelled(tuple(column.fields), table_field.fields)
            api["fields"] = [sub.to_api_repr() for sub in inner]
        renamed.append(SchemaField.from_api_repr(api))
    return tuple(renamed)


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
