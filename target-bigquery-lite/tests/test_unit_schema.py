"""Pure tests: JSON Schema to BigQuery mapping, renames, and schema evolution."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud.bigquery import SchemaField

from target_bigquery_lite.errors import InputError, SchemaChangeError
from target_bigquery_lite.schema_evolution import canonical_type, load_fields, reconcile
from target_bigquery_lite.schema_mapping import map_schema


def mapped(prop: dict[str, Any], required: bool = False) -> tuple[str, str]:
    schema = {"type": "object", "properties": {"c": prop}, "required": ["c"] if required else []}
    field = map_schema(schema, "s").fields[0]
    return field.field_type, field.mode


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ({"type": "integer"}, ("INT64", "NULLABLE")),
        ({"type": ["null", "integer"]}, ("INT64", "NULLABLE")),
        ({"type": "number"}, ("FLOAT64", "NULLABLE")),
        ({"type": "number", "multipleOf": 0.01}, ("NUMERIC", "NULLABLE")),
        ({"type": "string", "format": "decimal"}, ("NUMERIC", "NULLABLE")),
        ({"type": "boolean"}, ("BOOL", "NULLABLE")),
        ({"type": "string"}, ("STRING", "NULLABLE")),
        ({"type": "string", "format": "date-time"}, ("TIMESTAMP", "NULLABLE")),
        ({"type": "string", "format": "date"}, ("DATE", "NULLABLE")),
        ({"type": "string", "format": "time"}, ("TIME", "NULLABLE")),
        ({"type": "object"}, ("JSON", "NULLABLE")),
        ({"type": "object", "patternProperties": {".*": {}}}, ("JSON", "NULLABLE")),
        ({}, ("JSON", "NULLABLE")),
        ({"type": ["string", "integer"]}, ("JSON", "NULLABLE")),
        ({"type": ["integer", "number"]}, ("FLOAT64", "NULLABLE")),
        (
            {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
            ("TIMESTAMP", "NULLABLE"),
        ),
        (
            {"anyOf": [{"type": "string", "format": "date-time"}, {"type": ["string", "null"]}]},
            ("STRING", "NULLABLE"),
        ),
        ({"anyOf": [{"type": "integer"}, {"type": "object"}]}, ("JSON", "NULLABLE")),
        ({"type": "array", "items": {"type": "string"}}, ("STRING", "REPEATED")),
        (
            {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
            ("JSON", "NULLABLE"),
        ),
        ({"type": "array"}, ("JSON", "NULLABLE")),
        ({"type": "null"}, ("JSON", "NULLABLE")),
    ],
)
def test_type_mapping(prop: dict[str, Any], expected: tuple[str, str]) -> None:
    assert mapped(prop) == expected


def test_required_non_null_top_level_properties_are_required() -> None:
    assert mapped({"type": "integer"}, required=True) == ("INT64", "REQUIRED")
    assert mapped({"type": ["integer", "null"]}, required=True) == ("INT64", "NULLABLE")


def test_objects_with_properties_become_records_and_refs_resolve() -> None:
    schema = {
        "type": "object",
        "definitions": {"point": {"type": "object", "properties": {"x": {"type": "number"}}}},
        "properties": {
            "where": {"$ref": "#/definitions/point"},
            "path": {"type": "array", "items": {"$ref": "#/definitions/point"}},
        },
    }
    fields = map_schema(schema, "s").fields
    assert fields == (
        SchemaField("where", "RECORD", fields=[SchemaField("x", "FLOAT64")]),
        SchemaField("path", "RECORD", mode="REPEATED", fields=[SchemaField("x", "FLOAT64")]),
    )


def test_renamer_renames_nested_keys_only_where_needed() -> None:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "d": {"type": "object", "properties": {"agent:type": {"type": "string"}}},
            "list": {"type": "array", "items": {"type": "object", "properties": {"a b": {}}}},
        },
    }
    result = map_schema(schema, "s")
    assert [f.name for f in result.fields] == ["id", "d", "list"]
    assert result.renamer is not None
    record = {"id": 1, "d": {"agent:type": "x"}, "list": [{"a b": 1}, {"a b": 2}], "extra": 3}
    assert result.renamer(record) == {
        "id": 1, "d": {"agent_type": "x"}, "list": [{"a_b": 1}, {"a_b": 2}], "extra": 3,
    }  # fmt: skip
    plain = {"type": "object", "properties": {"id": {"type": "integer"}}}
    assert map_schema(plain, "s").renamer is None


def test_schema_without_properties_and_collisions_fail() -> None:
    with pytest.raises(InputError, match="has no properties"):
        map_schema({"type": "object"}, "s")
    with pytest.raises(InputError, match="'Id' and 'id' both become BigQuery column 'id'"):
        map_schema({"properties": {"Id": {}, "id": {}}}, "s")


TABLE = (
    SchemaField("id", "INTEGER", mode="REQUIRED"),
    SchemaField("amount", "FLOAT"),
    SchemaField("payload", "JSON"),
    SchemaField("rec", "RECORD", fields=[SchemaField("a", "INTEGER")]),
    SchemaField("tags", "STRING", mode="REPEATED"),
)


def test_reconcile_adds_columns_and_nested_fields_as_nullable() -> None:
    wanted = (
        SchemaField("id", "INT64", mode="REQUIRED"),
        SchemaField(
            "rec", "RECORD", fields=[SchemaField("a", "INT64"), SchemaField("b", "STRING")]
        ),
        SchemaField("description", "STRING", mode="REQUIRED"),
    )
    evolution = reconcile(TABLE, wanted, "t")
    assert evolution.changes == (
        "add column rec.b STRING NULLABLE",
        "add column description STRING NULLABLE",
    )
    names = [f.name for f in evolution.fields]
    assert names == ["id", "amount", "payload", "rec", "tags", "description"]
    assert evolution.fields[-1].mode == "NULLABLE"
    assert [f.name for f in evolution.fields[3].fields] == ["a", "b"]
    assert [f.name for f in load_fields(evolution.fields, wanted)] == ["id", "rec", "description"]


def test_reconcile_relaxes_required_columns() -> None:
    evolution = reconcile(TABLE, (SchemaField("amount", "FLOAT64"),), "t")
    assert evolution.changes == ("relax id to NULLABLE (no longer sent)",)
    assert evolution.fields[0].mode == "NULLABLE"
    relaxed = reconcile(TABLE, (SchemaField("id", "INT64"),), "t")
    assert relaxed.changes == ("relax id to NULLABLE",)


def test_reconcile_keeps_columns_that_already_hold_the_new_type() -> None:
    wanted = (
        SchemaField("id", "INT64", mode="REQUIRED"),
        SchemaField("amount", "INT64"),  # integers fit a FLOAT64 column
        SchemaField("payload", "RECORD", fields=[SchemaField("z", "BOOL")]),  # JSON holds all
    )
    evolution = reconcile(TABLE, wanted, "t")
    assert evolution.changes == ()
    assert [canonical_type(f.field_type) for f in load_fields(evolution.fields, wanted)] == [
        "INT64",
        "FLOAT64",
        "JSON",
    ]


@pytest.mark.parametrize(
    ("field", "what"),
    [
        (
            SchemaField("amount", "STRING"),
            "column amount is FLOAT64 NULLABLE in BigQuery but the stream's SCHEMA now maps "
            "it to STRING NULLABLE",
        ),
        (
            SchemaField("id", "INT64", mode="REPEATED"),
            "column id is INT64 REQUIRED in BigQuery but the stream's SCHEMA now maps "
            "it to INT64 REPEATED",
        ),
        (SchemaField("tags", "STRING"), "column tags is STRING REPEATED"),
        (
            SchemaField("rec", "RECORD", fields=[SchemaField("a", "STRING")]),
            "column rec.a is INT64 NULLABLE",
        ),
    ],
)
def test_reconcile_refuses_incompatible_changes(field: SchemaField, what: str) -> None:
    with pytest.raises(SchemaChangeError, match="incompatible schema change for table t") as info:
        reconcile(TABLE, (field,), "t")
    assert what in str(info.value)


def test_a_recursive_ref_becomes_a_json_column() -> None:
    tree = {
        "definitions": {
            "node": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "child": {"$ref": "#/definitions/node"}},
            }
        },
        "properties": {"id": {"type": "integer"}, "root": {"$ref": "#/definitions/node"}},
    }
    (_, root) = map_schema(tree, "s").fields
    assert root.field_type == "RECORD"
    assert [(f.name, f.field_type) for f in root.fields] == [("name", "STRING"), ("child", "JSON")]


def test_a_folded_property_records_its_source_and_a_later_one_is_refused() -> None:
    mapped = map_schema({"properties": {"id": {"type": "integer"}, "a b": {}}}, "s")
    assert [(f.name, f.description) for f in mapped.fields] == [
        ("id", None),
        ("a_b", "Singer property: a b"),
    ]
    other = map_schema({"properties": {"a_b": {}}}, "s").fields
    with pytest.raises(SchemaChangeError, match="property 'a_b' maps to column a_b, which holds"):
        reconcile(mapped.fields, other, "t")
    kept = SchemaField("x", "STRING", description="keep me", policy_tags=None)
    assert reconcile((kept,), (SchemaField("x", "STRING"),), "t").fields[0].description == "keep me"
