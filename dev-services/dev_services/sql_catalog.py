"""Turn BigQuery table resources and query parameters into ZetaSQL's catalog and types.

A table is registered under the path the statement wrote it with (`p.d.t` as one quoted
name, `p`.`d`.`t`, `d.t` with the default project, `t` with the default dataset), so
ZetaSQL resolves every spelling BigQuery accepts. Column names are case-insensitive, as in
BigQuery (ZetaSQL's own rule); dataset and table names are case-sensitive in BigQuery, so
a table is only found under its exact name (`TableSource` checks the case).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from zetasql.wasi._pb2.zetasql.proto import options_pb2, simple_catalog_pb2
from zetasql.wasi._pb2.zetasql.public import simple_table_pb2, type_pb2

_SCALARS = {
    "STRING": type_pb2.TYPE_STRING,
    "BYTES": type_pb2.TYPE_BYTES,
    "INTEGER": type_pb2.TYPE_INT64,
    "INT64": type_pb2.TYPE_INT64,
    "FLOAT": type_pb2.TYPE_DOUBLE,
    "FLOAT64": type_pb2.TYPE_DOUBLE,
    "NUMERIC": type_pb2.TYPE_NUMERIC,
    "DECIMAL": type_pb2.TYPE_NUMERIC,
    "BIGNUMERIC": type_pb2.TYPE_BIGNUMERIC,
    "BIGDECIMAL": type_pb2.TYPE_BIGNUMERIC,
    "BOOLEAN": type_pb2.TYPE_BOOL,
    "BOOL": type_pb2.TYPE_BOOL,
    "TIMESTAMP": type_pb2.TYPE_TIMESTAMP,
    "DATE": type_pb2.TYPE_DATE,
    "TIME": type_pb2.TYPE_TIME,
    "DATETIME": type_pb2.TYPE_DATETIME,
    "GEOGRAPHY": type_pb2.TYPE_GEOGRAPHY,
    "JSON": type_pb2.TYPE_JSON,
    "INTERVAL": type_pb2.TYPE_INTERVAL,
}
_STRUCTS = frozenset({"RECORD", "STRUCT"})


@dataclass(frozen=True)
class TableRef:
    """A table as BigQuery names it: `project.dataset.table`."""

    project: str
    dataset: str
    table: str

    @property
    def full_name(self) -> str:
        """`project.dataset.table`."""
        return f"{self.project}.{self.dataset}.{self.table}"


def resolve_path(
    path: tuple[str, ...], project: str, default_dataset: str | None
) -> TableRef | None:
    """Which table a path written in SQL means (None: not a table this catalog can know)."""
    parts = [part for segment in path for part in segment.split(".")]
    if len(parts) == 3:
        return TableRef(*parts)
    if len(parts) == 2:
        return TableRef(project, *parts)
    if len(parts) == 1 and default_dataset:
        return TableRef(project, default_dataset, parts[0])
    return None


def field_type(field: Mapping[str, Any]) -> type_pb2.TypeProto:
    """The ZetaSQL type of a BigQuery schema field (REPEATED: an ARRAY of it).

    Raises:
        ValueError: for a type this mapping does not know.
    """
    kind = str(field.get("type", "")).upper()
    if kind in _STRUCTS:
        element = type_pb2.TypeProto(
            type_kind=type_pb2.TYPE_STRUCT,
            struct_type=type_pb2.StructTypeProto(
                field=[
                    type_pb2.StructFieldProto(field_name=sub["name"], field_type=field_type(sub))
                    for sub in field.get("fields") or ()
                ]
            ),
        )
    elif kind in _SCALARS:
        element = type_pb2.TypeProto(type_kind=_SCALARS[kind])
    else:
        raise ValueError(f"unknown BigQuery type {kind!r} of field {field.get('name')!r}")
    if str(field.get("mode", "")).upper() == "REPEATED":
        return type_pb2.TypeProto(
            type_kind=type_pb2.TYPE_ARRAY, array_type=type_pb2.ArrayTypeProto(element_type=element)
        )
    return element


def parameter_type(parameter_type_: Mapping[str, Any]) -> type_pb2.TypeProto:
    """The ZetaSQL type of a query parameter's `parameterType` (as the REST API sends it)."""
    kind = str(parameter_type_.get("type", "")).upper()
    if kind == "ARRAY":
        return type_pb2.TypeProto(
            type_kind=type_pb2.TYPE_ARRAY,
            array_type=type_pb2.ArrayTypeProto(
                element_type=parameter_type(parameter_type_.get("arrayType") or {})
            ),
        )
    if kind in _STRUCTS:
        fields = [
            type_pb2.StructFieldProto(
                field_name=item.get("name", ""), field_type=parameter_type(item.get("type") or {})
            )
            for item in parameter_type_.get("structTypes") or ()
        ]
        return type_pb2.TypeProto(
            type_kind=type_pb2.TYPE_STRUCT, struct_type=type_pb2.StructTypeProto(field=fields)
        )
    return field_type({"type": kind or "STRING"})


def table_proto(
    name: str, ref: TableRef, resource: Mapping[str, Any]
) -> simple_table_pb2.SimpleTableProto:
    """A catalog table named `name` with the resource's columns (and partition pseudo-columns)."""
    columns = [
        simple_table_pb2.SimpleColumnProto(
            name=field["name"], type=field_type(field), is_writable_column=True
        )
        for field in (resource.get("schema") or {}).get("fields") or ()
    ]
    partitioning = resource.get("timePartitioning") or {}
    if partitioning and not partitioning.get("field"):
        for pseudo, kind in (("_PARTITIONTIME", "TIMESTAMP"), ("_PARTITIONDATE", "DATE")):
            columns.append(
                simple_table_pb2.SimpleColumnProto(
                    name=pseudo, type=field_type({"type": kind}), is_pseudo_column=True
                )
            )
    return simple_table_pb2.SimpleTableProto(name=name, full_name=ref.full_name, column=columns)


def build_catalog(
    tables: Iterable[tuple[tuple[str, ...], TableRef, Mapping[str, Any]]],
    language: options_pb2.LanguageOptionsProto,
) -> simple_catalog_pb2.SimpleCatalogProto:
    """A root catalog with BigQuery's builtin functions and each (path, ref, resource) table."""
    root = simple_catalog_pb2.SimpleCatalogProto(
        name="bigquery",
        builtin_function_options=options_pb2.ZetaSQLBuiltinFunctionOptionsProto(
            language_options=language
        ),
    )
    for path, ref, resource in tables:
        catalog = root
        for segment in path[:-1]:
            catalog = _sub_catalog(catalog, segment)
        if not any(table.name.lower() == path[-1].lower() for table in catalog.table):
            catalog.table.append(table_proto(path[-1], ref, resource))
    return root


def _sub_catalog(
    parent: simple_catalog_pb2.SimpleCatalogProto, name: str
) -> simple_catalog_pb2.SimpleCatalogProto:
    for child in parent.catalog:
        if child.name.lower() == name.lower():
            return child
    child = parent.catalog.add()
    child.name = name
    return child
