"""Pure tests: Cloud Storage settings, object names and the metadata `rebuild` reads back."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
from google.cloud.bigquery import SchemaField

from target_bigquery_lite.config import DEFAULT_GCS_PREFIX, parse_settings
from target_bigquery_lite.errors import ConfigError
from target_bigquery_lite.gcs_archive import (
    MAX_SCHEMA_METADATA_BYTES,
    object_metadata,
    object_name,
    parse_object,
    table_prefix,
)
from target_bigquery_lite.gcs_staging import UPLOAD_CHUNK_SIZE
from target_bigquery_lite.rebuild import rebuild

BASE = {"project": "p", "dataset": "d"}
FIELDS = (
    SchemaField("id", "INT64", mode="REQUIRED"),
    SchemaField("where", "RECORD", fields=(SchemaField("host", "STRING"),)),
)


def test_gcs_settings_defaults_and_warnings() -> None:
    settings, warnings = parse_settings(BASE)
    assert (settings.gcs_bucket, settings.gcs_prefix, settings.gcs_keep_objects) == (
        None, DEFAULT_GCS_PREFIX, False,
    )  # fmt: skip
    assert settings.gcs_endpoint is None
    assert warnings == []
    _, warnings = parse_settings({**BASE, "gcs_keep_objects": True, "gcs_prefix": "x/"})
    assert warnings == [
        "config: 'gcs_prefix' has no effect without 'gcs_bucket'",
        "config: 'gcs_keep_objects' has no effect without 'gcs_bucket'",
    ]
    settings, _ = parse_settings(
        {**BASE, "gcs_bucket": "my.bucket-1", "gcs_endpoint": "http://127.0.0.1:4443/"}
    )
    assert settings.gcs_bucket == "my.bucket-1"
    assert settings.gcs_endpoint == "http://127.0.0.1:4443"


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("gcs_bucket", "Upper", "'gcs_bucket' must be a Cloud Storage bucket name"),
        ("gcs_bucket", "ab", "'gcs_bucket' must be a Cloud Storage bucket name"),
        ("gcs_prefix", "/absolute/", "'gcs_prefix' must be letters, digits"),
        ("gcs_prefix", "a//b/", "'gcs_prefix' must be letters, digits"),
        ("gcs_prefix", "wild*/", "'gcs_prefix' must be letters, digits"),
        ("gcs_prefix", "line\nbreak/", "'gcs_prefix' must be letters, digits"),
        ("gcs_keep_objects", "yes", "'gcs_keep_objects' must be true or false"),
        ("gcs_endpoint", "127.0.0.1:4443", "'gcs_endpoint' must start with http://"),
    ],
)
def test_invalid_gcs_settings_fail_in_one_line(setting: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        parse_settings({**BASE, "gcs_bucket": "bucket", setting: value})


def test_object_names_are_hive_style_and_parse_back() -> None:
    day = date(2024, 2, 29)
    name = object_name("raw/", "flows", day, run_id="20240229120000_ab12cd34", batch=7, part=1)
    assert name == "raw/flows/dt=2024-02-29/20240229120000_ab12cd34-000007-1.jsonl"
    assert name.startswith(table_prefix("raw/", "flows"))
    created = datetime(2024, 2, 29, 12, tzinfo=UTC)
    blob = SimpleNamespace(
        name=name,
        size=123,
        time_created=created,
        metadata=object_metadata("merge", ("id",), FIELDS, 5),
    )
    item = parse_object("raw/", "flows", blob)
    assert item is not None
    assert (item.day, item.run_id, item.batch, item.part, item.size) == (
        day, "20240229120000_ab12cd34", 7, 1, 123,
    )  # fmt: skip
    assert (item.method, item.keys) == ("merge", ("id",))
    assert item.fields == FIELDS


@pytest.mark.parametrize(
    "name",
    [
        "raw/flows_raw/dt=2024-02-29/r-000001-1.jsonl",  # another table sharing the prefix
        "raw/flows/dt=2024-02-30/r-000001-1.jsonl",  # not a day
        "raw/flows/dt=2024-02-29/notes.txt",
        "raw/flows/dt=2024-02-29/sub/r-000001-1.jsonl",
    ],
)
def test_names_that_are_not_the_tables_objects_are_not_parsed(name: str) -> None:
    blob = SimpleNamespace(name=name, size=1, time_created=None, metadata={})
    assert parse_object("raw/", "flows", blob) is None


def test_a_schema_too_large_for_object_metadata_is_left_out() -> None:
    wide = tuple(SchemaField(f"column_{i:04d}", "STRING") for i in range(400))
    metadata = object_metadata("append", (), wide, 1)
    assert "bqlite-schema" not in metadata
    assert metadata == {"bqlite-method": "append", "bqlite-keys": "[]", "bqlite-rows": "1"}
    small = object_metadata("append", (), FIELDS, 1)
    assert len(small["bqlite-schema"].encode()) <= MAX_SCHEMA_METADATA_BYTES
    assert [f["name"] for f in json.loads(small["bqlite-schema"])] == ["id", "where"]


def test_upload_chunks_are_bounded_and_valid_for_resumable_uploads() -> None:
    assert UPLOAD_CHUNK_SIZE % (256 * 1024) == 0
    assert UPLOAD_CHUNK_SIZE <= 16 * 1024 * 1024


def test_rebuild_refuses_a_config_without_bucket_and_unsafe_table_names() -> None:
    settings, _ = parse_settings(BASE)
    with pytest.raises(ConfigError, match="the config has no gcs_bucket"):
        rebuild(settings, "flows")
    settings, _ = parse_settings({**BASE, "gcs_bucket": "bucket"})
    with pytest.raises(ConfigError, match="refusing to put table 'x`; DROP TABLE y' into SQL"):
        rebuild(settings, "flows", into="x`; DROP TABLE y")
