"""Settings: their definitions (names, types, defaults, descriptions) and up-front validation.

Every setting is checked before any input is read, so a typo fails in milliseconds with a
one-line message instead of after an hour of staging. The same definitions feed `--about`
and the README's settings table, so documentation cannot drift from the code.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import orjson

from target_bigquery_lite.errors import ConfigError
from target_bigquery_lite.identifiers import PROJECT_RE
from target_bigquery_lite.partitions import GRANULARITIES, MAX_PARTITIONS, IntegerRange, parse_range

LOAD_METHODS = ("merge", "append", "overwrite", "dedup_view")
DEFAULT_BATCH_MAX_ROWS = 500_000
DEFAULT_BATCH_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_BATCH_MAX_SECONDS = 300.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_MAX_TABLE_OPERATIONS = 1_400
MAX_CLUSTER_FIELDS = 4
DEFAULT_GCS_PREFIX = "target-bigquery-lite/"

_DATASET_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_]{0,100}$")
# Cloud Storage bucket names; object prefixes without wildcard or control characters, so a
# `gs://` URI built from them can never match more than the target's own objects.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_GCS_PREFIX_RE = re.compile(r"^(?!/)(?!.*//)[A-Za-z0-9._=/-]{0,512}$")


@dataclass(frozen=True)
class Setting:
    """One documented setting: what `--about` and the README show."""

    name: str
    kind: str
    description: str
    default: Any = None
    required: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("project", "string", "Google Cloud project that holds the dataset.", required=True),
    Setting(
        "dataset",
        "string",
        "BigQuery dataset for the tables (created if missing).",
        required=True,
    ),
    Setting("location", "string", "Dataset and job location, e.g. `US` or `europe-west1`."),
    Setting(
        "credentials_path",
        "string",
        "Service account or authorized-user JSON file; unset: Application Default Credentials.",
    ),
    Setting(
        "api_endpoint",
        "string",
        "BigQuery API endpoint, e.g. a local emulator `http://127.0.0.1:9050` "
        "(then anonymous credentials are used).",
    ),
    Setting(
        "load_method",
        "string",
        "`merge` (upsert on the key properties), `append`, `overwrite`, or `dedup_view` (append "
        "to `<table>_raw`, a view `<table>` shows the latest row per key). "
        "Unset: `merge` for streams with key properties, else `append`.",
    ),
    Setting(
        "batch_max_rows",
        "integer",
        "Flush (load and commit) after this many staged records, all streams together.",
        DEFAULT_BATCH_MAX_ROWS,
    ),
    Setting(
        "batch_max_bytes",
        "integer",
        "Flush after the staging files reach this many bytes, all streams together.",
        DEFAULT_BATCH_MAX_BYTES,
    ),
    Setting(
        "batch_max_seconds",
        "number",
        "Flush when the oldest staged record has waited this long.",
        DEFAULT_BATCH_MAX_SECONDS,
    ),
    Setting(
        "staging_dir",
        "string",
        "Directory for the NDJSON staging files (a per-run folder is made inside).",
        str(Path(tempfile.gettempdir()) / "target-bigquery-lite"),
    ),
    Setting("validate_records", "boolean", "Validate each record against its schema.", True),
    Setting(
        "exact_numbers",
        "boolean",
        "Map every `number` property to NUMERIC/BIGNUMERIC, digit for digit as the tap wrote it "
        "(default: FLOAT64 unless the schema hints a decimal: `multipleOf` < 1, "
        "`x-singer.decimal`).",
        False,
    ),
    Setting(
        "partition_field",
        "string",
        "Column to partition new tables on, where the stream has it: TIMESTAMP, DATE or "
        "DATETIME (time-unit, see `partition_granularity`) or INT64 (integer range, see "
        "`partition_range`). An existing table keeps its layout (a differing one is a warning).",
    ),
    Setting(
        "partition_granularity",
        "string",
        "Time-unit partitioning of a time `partition_field`: `HOUR`, `DAY`, `MONTH` or `YEAR` "
        "(DATE columns: not `HOUR`).",
        "DAY",
    ),
    Setting(
        "partition_range",
        "object",
        'Integer-range partitioning of an INT64 `partition_field` (required there): `{"start": '
        '..., "end": ..., "interval": ...}`, at most '
        f"{MAX_PARTITIONS:,} partitions; values outside [start, end) go to `__UNPARTITIONED__` "
        "(a warning per batch).",
    ),
    Setting(
        "merge_partition_filter",
        "boolean",
        "MERGE only the partitions of the batch: the target side is filtered on the batch's "
        "minimum and maximum of the partition column, as constants, so BigQuery prunes the "
        "rest. Correct only when a key's partition value never changes.",
        False,
    ),
    Setting(
        "require_partition_filter",
        "boolean",
        "Create partitioned tables that require a partition filter in every query (BigQuery "
        "refuses unfiltered ones, so nobody scans the whole table by accident). The target's "
        "own statements always carry one, on tables made elsewhere too.",
        False,
    ),
    Setting(
        "merge_update",
        "boolean",
        "false: the MERGE only inserts keys the table lacks (`WHEN NOT MATCHED` only, so it "
        "reads only the target's key and partition columns); the row first committed for a "
        "key stays. For rows that never change.",
        True,
    ),
    Setting(
        "cluster_fields",
        "array",
        "Up to four columns to cluster new tables on, where the stream has them all.",
    ),
    Setting("table_prefix", "string", "Prefix for every table name.", ""),
    Setting(
        "add_metadata_columns",
        "boolean",
        "Add `_sdc_extracted_at` and `_sdc_received_at` columns.",
        False,
    ),
    Setting(
        "max_retries",
        "integer",
        "Retries of a transient BigQuery failure (exponential backoff) before giving up.",
        DEFAULT_MAX_RETRIES,
    ),
    Setting(
        "max_table_operations",
        "integer",
        "Most batches one run may commit into one table (each is a table operation; BigQuery "
        "allows about 1,500 a table a day). Batches grow (up to 8x) as a run nears it; a batch "
        "past it fails the run before it is committed.",
        DEFAULT_MAX_TABLE_OPERATIONS,
    ),
    Setting(
        "batch_roots",
        "array",
        "Folders (absolute paths or `file://` URLs) that BATCH manifests may point into, e.g. "
        "the tap's `batch_config.storage.root`; a file anywhere else (symlinks resolved) is "
        "refused before it is read. Unset: BATCH messages are refused.",
    ),
    Setting(
        "delete_batch_files",
        "boolean",
        "Delete each BATCH file once all its rows are committed, so the tap's batch folder "
        "does not grow from run to run.",
        False,
    ),
    Setting(
        "gcs_bucket",
        "string",
        "Cloud Storage bucket to stage batches in: each staging file is uploaded as an object "
        "and loaded from its `gs://` URI. Unset: files are uploaded to the load job directly.",
    ),
    Setting(
        "gcs_prefix",
        "string",
        "Object name prefix: objects are `<gcs_prefix><table>/dt=<YYYY-MM-DD>/"
        "<run id>-<batch>-<n>.jsonl` (`dt`: the UTC day of the batch's commit).",
        DEFAULT_GCS_PREFIX,
    ),
    Setting(
        "gcs_keep_objects",
        "boolean",
        "Keep the objects after their batch is committed, as a raw archive that `rebuild` "
        "can reload; false: delete them once committed.",
        False,
    ),
    Setting(
        "gcs_endpoint",
        "string",
        "Cloud Storage API endpoint of a local emulator, e.g. `http://127.0.0.1:4443` (then "
        "anonymous credentials are used).",
    ),
)
_KNOWN = {setting.name for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one run."""

    project: str
    dataset: str
    location: str | None = None
    credentials_path: str | None = None
    api_endpoint: str | None = None
    load_method: str | None = None
    batch_max_rows: int = DEFAULT_BATCH_MAX_ROWS
    batch_max_bytes: int = DEFAULT_BATCH_MAX_BYTES
    batch_max_seconds: float = DEFAULT_BATCH_MAX_SECONDS
    staging_dir: str = str(Path(tempfile.gettempdir()) / "target-bigquery-lite")
    validate_records: bool = True
    exact_numbers: bool = False
    partition_field: str | None = None
    partition_granularity: str = "DAY"
    partition_range: IntegerRange | None = None
    merge_partition_filter: bool = False
    require_partition_filter: bool = False
    merge_update: bool = True
    cluster_fields: tuple[str, ...] = ()
    table_prefix: str = ""
    add_metadata_columns: bool = False
    max_retries: int = DEFAULT_MAX_RETRIES
    max_table_operations: int = DEFAULT_MAX_TABLE_OPERATIONS
    batch_roots: tuple[str, ...] = ()
    delete_batch_files: bool = False
    gcs_bucket: str | None = None
    gcs_prefix: str = DEFAULT_GCS_PREFIX
    gcs_keep_objects: bool = False
    gcs_endpoint: str | None = None


def load_settings(path: Path) -> tuple[Settings, list[str]]:
    """Read and validate a JSON config file; return the settings and warnings to log."""
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return parse_settings(raw)


def parse_settings(raw: dict[str, Any]) -> tuple[Settings, list[str]]:
    """Validate a config mapping; unknown keys are ignored with a warning (Meltano adds some)."""
    warnings = [f"config: ignoring unknown setting '{key}'" for key in sorted(set(raw) - _KNOWN)]
    values = {key: value for key, value in raw.items() if key in _KNOWN and value is not None}
    for key in ("project", "dataset"):
        if not values.get(key):
            raise ConfigError(f"config: '{key}' is required")
    settings = Settings(
        project=_pattern(
            values,
            "project",
            PROJECT_RE,
            "a Google Cloud project id: lowercase letters, digits and hyphens, starting with a "
            "letter (optionally after 'domain.com:')",
        ),
        dataset=_pattern(values, "dataset", _DATASET_RE, "letters, digits and underscores"),
        location=_string(values, "location"),
        credentials_path=_credentials(values),
        api_endpoint=_endpoint(values, "api_endpoint"),
        load_method=_choice(values, "load_method", LOAD_METHODS),
        batch_max_rows=_integer(values, "batch_max_rows", DEFAULT_BATCH_MAX_ROWS, minimum=1),
        batch_max_bytes=_integer(values, "batch_max_bytes", DEFAULT_BATCH_MAX_BYTES, minimum=1),
        batch_max_seconds=_seconds(values),
        staging_dir=_string(values, "staging_dir") or Settings.staging_dir,
        validate_records=_boolean(values, "validate_records", default=True),
        exact_numbers=_boolean(values, "exact_numbers", default=False),
        partition_field=_string(values, "partition_field"),
        partition_granularity=_choice(values, "partition_granularity", GRANULARITIES) or "DAY",
        partition_range=parse_range(values["partition_range"])
        if "partition_range" in values
        else None,
        merge_partition_filter=_boolean(values, "merge_partition_filter", default=False),
        require_partition_filter=_boolean(values, "require_partition_filter", default=False),
        merge_update=_boolean(values, "merge_update", default=True),
        cluster_fields=_cluster_fields(values),
        table_prefix=_pattern(values, "table_prefix", _PREFIX_RE, "letters, digits, underscores")
        if "table_prefix" in values
        else "",
        add_metadata_columns=_boolean(values, "add_metadata_columns", default=False),
        max_retries=_integer(values, "max_retries", DEFAULT_MAX_RETRIES, minimum=0),
        max_table_operations=_integer(
            values, "max_table_operations", DEFAULT_MAX_TABLE_OPERATIONS, minimum=1
        ),
        batch_roots=_batch_roots(values),
        delete_batch_files=_boolean(values, "delete_batch_files", default=False),
        gcs_bucket=_pattern(values, "gcs_bucket", _BUCKET_RE, "a Cloud Storage bucket name")
        if "gcs_bucket" in values
        else None,
        gcs_prefix=_pattern(
            values, "gcs_prefix", _GCS_PREFIX_RE, "letters, digits and . _ = - / (no //)"
        )
        if "gcs_prefix" in values
        else DEFAULT_GCS_PREFIX,
        gcs_keep_objects=_boolean(values, "gcs_keep_objects", default=False),
        gcs_endpoint=_endpoint(values, "gcs_endpoint"),
    )
    if settings.gcs_bucket is None:
        warnings += [
            f"config: '{key}' has no effect without 'gcs_bucket'"
            for key in ("gcs_prefix", "gcs_keep_objects", "gcs_endpoint")
            if key in values
        ]
    if settings.partition_field is None:
        warnings += [
            f"config: '{key}' has no effect without 'partition_field'"
            for key in (
                "partition_granularity",
                "partition_range",
                "merge_partition_filter",
                "require_partition_filter",
            )
            if key in values
        ]
    return settings, warnings


def _string(values: dict[str, Any], key: str) -> str | None:
    value = values.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"config: '{key}' must be a non-empty string (got {value!r})")
    return value


def _pattern(values: dict[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str:
    value = values.get(key, "")
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(f"config: '{key}' must be {what} (got {value!r})")
    return value


def _choice(values: dict[str, Any], key: str, choices: tuple[str, ...]) -> str | None:
    value = values.get(key)
    if value is not None and value not in choices:
        raise ConfigError(f"config: '{key}' must be one of {', '.join(choices)} (got {value!r})")
    return value


def _integer(values: dict[str, Any], key: str, default: int, *, minimum: int) -> int:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"config: '{key}' must be an integer >= {minimum} (got {value!r})")
    return value


def _seconds(values: dict[str, Any]) -> float:
    value = values.get("batch_max_seconds", DEFAULT_BATCH_MAX_SECONDS)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"config: 'batch_max_seconds' must be a number > 0 (got {value!r})")
    return float(value)


def _boolean(values: dict[str, Any], key: str, *, default: bool) -> bool:
    value = values.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"config: '{key}' must be true or false (got {value!r})")
    return value


def _credentials(values: dict[str, Any]) -> str | None:
    path = _string(values, "credentials_path")
    if path is not None and not Path(path).expanduser().is_file():
        raise ConfigError(f"config: credentials_path {path} is not a readable file")
    return str(Path(path).expanduser()) if path else None


def _endpoint(values: dict[str, Any], key: str) -> str | None:
    endpoint = _string(values, key)
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"config: '{key}' must start with http:// or https:// ({endpoint})")
    return endpoint.rstrip("/") if endpoint else None


def _cluster_fields(values: dict[str, Any]) -> tuple[str, ...]:
    fields = values.get("cluster_fields", [])
    if (
        not isinstance(fields, list)
        or not all(isinstance(name, str) and name for name in fields)
        or len(fields) > MAX_CLUSTER_FIELDS
    ):
        raise ConfigError(
            f"config: 'cluster_fields' must be a list of at most {MAX_CLUSTER_FIELDS} column names"
        )
    return tuple(fields)


def _batch_roots(values: dict[str, Any]) -> tuple[str, ...]:
    roots = values.get("batch_roots", [])
    if isinstance(roots, str):  # one folder, or a JSON list in an environment variable
        roots = orjson.loads(roots) if roots.lstrip().startswith("[") else [roots]
    if not isinstance(roots, list) or not all(isinstance(root, str) and root for root in roots):
        raise ConfigError("config: 'batch_roots' must be a list of folders")
    resolved = []
    for root in roots:
        path = Path(unquote(urlparse(root).path) if root.startswith("file://") else root)
        if not path.is_absolute():
            raise ConfigError(f"config: batch_roots entry {root!r} is not an absolute path")
        resolved.append(os.path.realpath(path))
    return tuple(resolved)
