"""Every Singer test stream shipped with singer-sdk either loads as expected or fails clearly.

Each case states which outcome a BigQuery user should expect for that file and checks the
rows (or the error text) and the STATE lines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import singer_sdk.testing
from google.cloud import bigquery

from tests.conftest import query, run_target

SDK_STREAMS = Path(singer_sdk.testing.__file__).parent / "target_test_streams"


def sdk_file(name: str) -> Path:
    return SDK_STREAMS / f"{name}.singer"


def test_every_sdk_stream_file_has_a_case() -> None:
    shipped = {path.stem for path in SDK_STREAMS.glob("*.singer")}
    covered = (
        set(LOADS)
        | set(FAILS)
        | {
            "no_primary_keys",
            "no_primary_keys_append",
            "user_location_data",
            "user_location_upsert_data",
        }
    )
    assert shipped == covered


# file -> (table -> expected rows as tuples of the listed columns), expected state lines
LOADS: dict[str, tuple[dict[str, tuple[str, list[tuple[Any, ...]]]], list[Any]]] = {
    "array_data": (
        {
            "test_array_data": (
                "id, fruits",
                [
                    (1, ["apple", "orange", "pear"]),
                    (2, ["banana", "apple"]),
                    (3, ["pear"]),
                    (4, ["orange", "banana", "apple", "pear"]),
                ],
            )
        },
        [{"test_array_data": 4}] * 2,
    ),
    "camelcase": (
        {
            "TestCamelcase": (
                "Id, clientName",
                [("1", "Gitter Windows Desktop App"), ("2", "Gitter iOS App")],
            )
        },
        [],
    ),
    "camelcase_complex_schema": ({"ForecastingTypeToCategory": ("Id", [])}, []),
    "duplicate_records": (
        {"test_duplicate_records": ("id, metric", [(1, 100), (2, 20)])},
        [{"test_duplicate_records": 2}] * 2,
    ),
    "encoded_string_data": (
        {
            "test_strings": (
                "id, info",
                [
                    (1, "simple string 2837"),
                    (2, "απλή συμβολοσειρά"),
                    (3, "简单的字串"),
                    (4, "chaîne simple"),
                    (5, 'quoted "string"'),
                    (6, 'various " \\ / \n escape sequences'),
                    (7, "m"),
                    (8, "ā"),
                    (9, "ƙ"),
                    (10, "Double quoting: \\u0000 \\u0041 \\u0001"),
                    (11, "Control Characters in string: \x00 A \x01"),
                ],
            ),
            "test_strings_in_objects": (
                "id, info.name, info.value",
                [
                    (1, "simple", "simple string 2837"),
                    (2, "greek", "απλή συμβολοσειρά"),
                    (3, "chinese", "简单的字串"),
                    (4, "french", "chaîne simple"),
                    (5, "quoted string", 'quoted "string"'),
                    (6, "escape sequences", 'various " \\ / \n escape sequences'),
                    (7, "unicode", "m"),
                    (8, "unicode", "ā"),
                    (9, "unicode", "ƙ"),
                    (10, "Double quoting", " \\u0000 \\u0041 \\u0001"),
                    (11, "Control Characters in string", "\x00 A \x01"),
                ],
            ),
            "test_strings_in_arrays": (
                "id, strings",
                [
                    (1, ["simple string", "απλή συμβολοσειρά", "简单的字串"]),
                    (2, ["chaîne simple", 'quoted "string"']),
                    (3, ['various " \\ / \n escape sequences']),
                    (4, ["m", "ā", "ƙ"]),
                    (5, ["aaa", "Double quoting: \\u0000 \\u0041 \\u0001"]),
                    (6, ["bbb", "Control Characters in string: \x00 A \x01"]),
                ],
            ),
        },
        [{"test_strings": 11, "test_strings_in_objects": 11, "test_strings_in_arrays": 6}] * 2,
    ),
    "multiple_state_messages": (
        {
            "test_multiple_state_messages_a": ("id, metric", [(i, i * 100) for i in range(1, 7)]),
            "test_multiple_state_messages_b": ("id, metric", [(i, i * 110) for i in range(1, 7)]),
        },
        [{"test_multiple_state_messages_a": 5, "test_multiple_state_messages_b": 6}] * 2,
    ),
    "optional_attributes": (
        {
            "test_optional_attributes": (
                "id, optional",
                [(1, "This is optional"), (2, None), (3, "Also optional"), (4, None)],
            )
        },
        [{"test_optional_attributes": 4}] * 2,
    ),
    # key_properties sits inside the schema object, so the stream has none: rows are appended
    "pk_updates": (
        {
            "example_stream": (
                "id, name, email",
                [(1, "Alice", "alice@example.com"), (2, "Bob", "bob@example.com")],
            )
        },
        [],
    ),
    # the only STATE is {}: an empty state is never passed on
    "record_missing_fields": (
        {"record_missing_fields": ("id, optional", [(1, "now you see me"), (2, None)])},
        [],
    ),
    "schema_no_properties": (
        {
            "test_object_schema_with_properties": (
                "object_store.id, object_store.metric",
                [(1, 187), (2, 203)],
            ),
            "test_object_schema_no_properties": (
                "INT64(object_store.id), INT64(object_store.metric)",
                [(1, 1), (2, 2)],
            ),
        },
        [],
    ),
    "schema_updates": (
        {
            "test_schema_updates": (
                "id, a1, a3, a4.value, a5, a6",
                [
                    (1, 101.0, None, None, [], None),
                    (2, 102.0, True, None, [], None),
                    (3, 103.0, False, 1, ["banana", "apple"], None),
                    (4, 104.0, True, 22, ["orange", "pear"], None),
                    (5, 105.0, False, 33, ["apple"], 985),
                    (6, 106.0, True, 444, ["banana", "orange"], 341),
                ],
            )
        },
        [{"test_schema_updates": 6}] * 2,
    ),
    "special_chars_in_attributes": (
        {
            "test_SpecialChars_in_attributes": (
                "_id, d.env, d.agent_type, d.agent_os_version",
                [("a2e98886", "prod", "desktop", "10.13.1")],
            )
        },
        [],
    ),
}

FAILS = {
    "invalid_schema": "SCHEMA for stream 'test_invalid_schema' has no properties",
    "record_before_schema": (
        "RECORD for stream 'test_record_before_schema' on line 1 before its SCHEMA"
    ),
    "record_missing_key_property": (
        "stream 'test_record_missing_key_property', record 1: key property 'id' is missing"
    ),
    "record_missing_required_property": (
        "stream 'test_record_missing_required_property', record 1 violates its schema: "
        "field 'id': 'id' is a required property (input line 2)"
    ),
}


def selected(
    client: bigquery.Client, dataset: str, table: str, columns: str
) -> list[tuple[Any, ...]]:
    # ORDER BY the first selected expression: BigQuery cannot order by a JSON value itself
    sql = f"SELECT {columns} FROM `{client.project}.{dataset}.{table}` ORDER BY 1"
    return [tuple(row.values()) for row in client.query(sql).result()]


@pytest.mark.parametrize("name", sorted(LOADS))
def test_sdk_stream_loads(
    name: str,
    target_config: Callable[..., Path],
    bq_client: bigquery.Client,
    bq_dataset: str,
    tables: Callable[[], list[str]],
) -> None:
    expected_tables, expected_states = LOADS[name]
    result = run_target(target_config(), sdk_file(name))
    assert result.returncode == 0, result.stderr
    assert result.states == expected_states
    assert tables() == sorted(expected_tables)
    for table, (columns, expected_rows) in expected_tables.items():
        assert selected(bq_client, bq_dataset, table, columns) == expected_rows, table


def test_complex_camelcase_schema_creates_all_columns(
    target_config: Callable[..., Path], bq_client: bigquery.Client, bq_dataset: str
) -> None:
    result = run_target(target_config(), sdk_file("camelcase_complex_schema"))
    assert result.returncode == 0, result.stderr
    table = bq_client.get_table(f"flows-local.{bq_dataset}.ForecastingTypeToCategory")
    columns = {field.name: field.field_type for field in table.schema}
    assert columns["CreatedDate"] == "STRING"  # anyOf date-time or any string
    assert columns["IsDeleted"] == "BOOLEAN"
    assert columns["DisplayPosition"] == "INTEGER"
    assert {"age", "NewCamelCasedAttribute", "_attribute_startswith_underscore"} <= set(columns)


@pytest.mark.parametrize("name", sorted(FAILS))
def test_sdk_stream_fails_clearly(
    name: str, target_config: Callable[..., Path], tables: Callable[[], list[str]]
) -> None:
    result = run_target(target_config(), sdk_file(name))
    assert result.returncode == 1
    assert FAILS[name] in result.stderr
    assert "Traceback" not in result.stderr
    assert result.states == []


def test_no_primary_keys_then_append_adds_rows(
    target_config: Callable[..., Path], rows: Callable[..., list[dict[str, Any]]]
) -> None:
    config = target_config()
    first = run_target(config, sdk_file("no_primary_keys"))
    assert first.returncode == 0, first.stderr
    assert first.states == [{"test_no_pk": 3}] * 2
    assert [(r["id"], r["metric"]) for r in rows("test_no_pk")] == [(1, 11), (2, 22), (3, 33)]
    second = run_target(config, sdk_file("no_primary_keys_append"))
    assert second.returncode == 0, second.stderr
    assert sorted((r["id"], r["metric"]) for r in rows("test_no_pk")) == [
        (1, 11), (1, 101), (2, 22), (2, 202), (3, 33), (3, 303), (4, 404), (5, 505),
    ]  # fmt: skip


def test_user_location_data_then_upsert(
    target_config: Callable[..., Path], bq_client: bigquery.Client, bq_dataset: str
) -> None:
    config = target_config()
    assert run_target(config, sdk_file("user_location_data")).returncode == 0
    result = run_target(config, sdk_file("user_location_upsert_data"))
    assert result.returncode == 0, result.stderr
    assert result.states[-1] == {"test_users": 13, "test_locations": 8, "test_user_in_location": 14}
    users = selected(bq_client, bq_dataset, "test_users", "id, name")
    assert users == [
        (1, "Johny"), (2, "George"), (3, "Jacob"), (4, "Josh"),
        (5, "Jim"), (8, "Thomas"), (12, "Paul"), (13, "Mary"),
    ]  # fmt: skip
    locations = selected(bq_client, bq_dataset, "test_locations", "id, name")
    assert locations == [
        (1, "Philly"), (2, "NY"), (3, "San Francisco"), (6, "Colorado"), (8, "Boston"),
    ]  # fmt: skip
    visits = selected(bq_client, bq_dataset, "test_user_in_location", "id, location_id, info.mood")
    assert visits == [(1, 4, "sad"), (2, 3, "satisfied"), (3, 3, "happy"), (6, 2, "happy"),
                      (14, 1, "ok")]  # fmt: skip
    assert query(
        bq_client, f"SELECT COUNT(*) AS n FROM `flows-local.{bq_dataset}.test_user_in_location`"
    ) == [{"n": 5}]
