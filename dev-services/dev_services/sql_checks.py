"""Analyze a query request's SQL as BigQuery would: ZetaSQL, the tables as they stand, the rules.

`check_sql` takes the statement or script of a `jobs.insert`/`jobs.query` request with its
declared parameters, reads the schemas of the tables it names (through `fetch_table`, at
that moment), and analyzes it statement by statement. It reports ZetaSQL's error, a
query over a `requirePartitionFilter` table without a filter that can prune, and which
tables the statement writes (for the per-table daily operation count).

The partition filter check walks ZetaSQL's resolved AST and is conservative: a scan of
such a table passes when anywhere in the statement its partitioning column (alone, or
inside a function of it alone) is compared (=, <, <=, >, >=, BETWEEN, IN) with an
expression that reads no column (literals, parameters, CURRENT_TIMESTAMP(), ...).
BigQuery's own analysis is finer (it also requires the filter to sit where it can prune),
so this check can miss a violation but never reports a statement BigQuery accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import message
from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2
from zetasql.wasi._pb2.zetasql.proto import options_pb2
from zetasql.wasi._pb2.zetasql.public import options_pb2 as public_options_pb2
from zetasql.wasi._pb2.zetasql.public import parse_resume_location_pb2

from dev_services.sql_catalog import TableRef, build_catalog, parameter_type, resolve_path
from dev_services.zetasql_engine import ServerError, ZetaSQL

TableFetcher = Callable[[TableRef], Mapping[str, Any] | None]
_COMPARISONS = frozenset(
    f"ZetaSQL:${name}"
    for name in ("equal", "less", "less_or_equal", "greater", "greater_or_equal", "between", "in")
)
_WRITES = ("merge", "insert", "update", "delete", "truncate")


@dataclass
class SqlReport:
    """What the analysis of one request found."""

    statements: int = 0
    errors: list[str] = field(default_factory=list)
    partition_errors: list[str] = field(default_factory=list)
    struct_order: list[str] = field(default_factory=list)
    written: list[TableRef] = field(default_factory=list)
    tables: list[TableRef] = field(default_factory=list)


def check_sql(
    zetasql: ZetaSQL,
    sql: str,
    parameters: Sequence[Mapping[str, Any]],
    *,
    project: str,
    default_dataset: str | None,
    fetch_table: TableFetcher,
) -> SqlReport:
    """Analyze `sql` (one statement or a script) against the tables it names, as they are now."""
    report = SqlReport()
    try:
        paths = zetasql.table_names(sql)
    except ServerError as exc:
        report.errors.append(exc.message)
        return report
    found: list[tuple[tuple[str, ...], TableRef, Mapping[str, Any]]] = []
    resources: dict[str, Mapping[str, Any]] = {}
    for path in dict.fromkeys(paths):
        ref = resolve_path(path, project, default_dataset)
        resource = fetch_table(ref) if ref is not None else None
        if ref is not None and resource is not None:
            found.append((path, ref, resource))
            resources[ref.full_name.lower()] = resource
            report.tables.append(ref)
    request = local_service_pb2.AnalyzeRequest(
        simple_catalog=build_catalog(found, zetasql.language),
        options=_analyzer_options(zetasql.language, parameters),
    )
    for kind, node in _analyze_script(zetasql, request, sql, report):
        report.written += _written_tables(kind, node, project)
        report.partition_errors += _partition_errors(node, resources)
        report.struct_order += _struct_order_problems(node)
    return report


def check_statements(
    zetasql: ZetaSQL,
    tables: Sequence[tuple[tuple[str, ...], TableRef, Mapping[str, Any]]],
    statements: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
) -> list[str | None]:
    """ZetaSQL's first error for each (sql, parameters), or None; one catalog for them all.

    For checking many generated statements quickly (the schema matrix): the catalog with
    its builtin functions is registered once instead of sent with every statement.
    """
    results: list[str | None] = []
    with zetasql.registered(build_catalog(tables, zetasql.language)) as catalog_id:
        for sql, parameters in statements:
            request = local_service_pb2.AnalyzeRequest(
                registered_catalog_id=catalog_id,
                options=_analyzer_options(zetasql.language, parameters),
            )
            report = SqlReport()
            for _ in _analyze_script(zetasql, request, sql, report):
                pass
            results.append(report.errors[0] if report.errors else None)
    return results


def _analyze_script(
    zetasql: ZetaSQL, request: local_service_pb2.AnalyzeRequest, sql: str, report: SqlReport
) -> Iterator[tuple[str, message.Message]]:
    """Analyze each statement of `sql` in turn; yield (kind, resolved node); stop at an error."""
    script = sql.encode()
    position = 0
    while script[position:].strip(b" \t\r\n;"):
        request.sql_statement = sql
        request.parse_resume_location.CopyFrom(
            parse_resume_location_pb2.ParseResumeLocationProto(input=sql, byte_position=position)
        )
        try:
            response = zetasql.analyze(request)
        except ServerError as exc:
            report.errors.append(exc.message)
            return
        report.statements += 1
        statement = response.resolved_statement
        kind = statement.WhichOneof("node")
        if kind:
            yield kind, getattr(statement, kind)
        if response.resume_byte_position <= position:
            return
        position = response.resume_byte_position


def _analyzer_options(
    language: options_pb2.LanguageOptionsProto, parameters: Sequence[Mapping[str, Any]]
) -> options_pb2.AnalyzerOptionsProto:
    options = options_pb2.AnalyzerOptionsProto(
        language_options=language,
        default_timezone="UTC",
        error_message_mode=public_options_pb2.ERROR_MESSAGE_ONE_LINE,  # with "[at line:column]"
    )
    positional = [p for p in parameters if not p.get("name")]
    if positional:
        options.parameter_mode = public_options_pb2.PARAMETER_POSITIONAL
        for item in positional:
            options.positional_query_parameters.append(parameter_type(item["parameterType"]))
    else:
        options.parameter_mode = public_options_pb2.PARAMETER_NAMED
        for item in parameters:
            options.query_parameters.add(
                name=item["name"], type=parameter_type(item.get("parameterType") or {})
            )
    return options


def _written_tables(kind: str, node: message.Message, project: str) -> list[TableRef]:
    if not any(kind == f"resolved_{name}_stmt_node" for name in _WRITES):
        return []
    ref = resolve_path((node.table_scan.table.full_name,), project, None)
    return [ref] if ref is not None else []


def _partition_errors(
    node: message.Message, resources: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """One error per scan of a require-partition-filter table that no pruning filter covers.

    An INSERT's own target is written, not read: BigQuery asks no filter for it.
    """
    scans: list[tuple[str, str, set[int]]] = []
    inserted = node.table_scan if node.DESCRIPTOR.name == "ResolvedInsertStmtProto" else None
    for scan in _walk(node, "ResolvedTableScanProto"):
        if inserted is not None and scan == inserted:
            continue
        column = _required_filter_column(resources.get(scan.table.full_name.lower()))
        if column is not None:
            ids = {c.column_id for c in scan.parent.column_list if c.name.lower() == column.lower()}
            scans.append((scan.table.full_name, column, ids))
    if not scans:
        return []
    filtered = {column_id for call in _walk(node, "ResolvedFunctionCallBaseProto")
                if call.function.name in _COMPARISONS
                for column_id in _pruning_columns(call)}  # fmt: skip
    return sorted(
        {
            f"Cannot query over table '{table}' without a filter over column(s) '{column}' that "
            "can be used for partition elimination"
            for table, column, ids in scans
            if not ids & filtered
        }
    )


def _struct_order_problems(node: message.Message) -> list[str]:
    """STRUCTs coerced to a type whose same-named fields come in another order.

    BigQuery converts (assigns, inserts) STRUCTs by position, not by field name, so such a
    value lands in the wrong fields, silently; the emulator matches names. Not an error
    in BigQuery, but always a bug: the front reports it and lets the statement run.
    """
    problems = []
    for cast in _walk(node, "ResolvedCastProto"):
        source = _expression(cast.expr)
        found = _reordered(source.type, cast.parent.type, "") if source is not None else None
        if found:
            problems.append(found)
    return problems


def _expression(node: message.Message) -> Any:
    """The `ResolvedExprProto` (type and all) inside an expression node's wrappers."""
    while node.DESCRIPTOR.name != "ResolvedExprProto":
        if any(oneof.name == "node" for oneof in node.DESCRIPTOR.oneofs):
            kind = node.WhichOneof("node")
            if kind is None:
                return None
            node = getattr(node, kind)
        elif "parent" in node.DESCRIPTOR.fields_by_name:
            node = node.parent
        else:
            return None
    return node


def _reordered(source: Any, target: Any, path: str) -> str | None:
    if source.HasField("array_type") and target.HasField("array_type"):
        return _reordered(source.array_type.element_type, target.array_type.element_type, path)
    if not (source.HasField("struct_type") and target.HasField("struct_type")):
        return None
    names = [f.field_name.lower() for f in source.struct_type.field]
    wanted = [f.field_name.lower() for f in target.struct_type.field]
    if names != wanted and sorted(names) == sorted(wanted):
        return (
            f"STRUCT{path and ' ' + path} with fields ({', '.join(names)}) is converted by "
            f"position into ({', '.join(wanted)}): BigQuery would put values in the wrong fields"
        )
    pairs = zip(source.struct_type.field, target.struct_type.field, strict=False)
    for mine, theirs in pairs:
        found = _reordered(mine.field_type, theirs.field_type, f"{path}.{mine.field_name}")
        if found:
            return found
    return None


def _required_filter_column(resource: Mapping[str, Any] | None) -> str | None:
    if not resource:
        return None
    time_partitioning = resource.get("timePartitioning") or {}
    required = resource.get("requirePartitionFilter") or time_partitioning.get(
        "requirePartitionFilter"
    )
    if not required:
        return None
    range_partitioning = resource.get("rangePartitioning") or {}
    return time_partitioning.get("field") or range_partitioning.get("field") or "_PARTITIONTIME"


def _pruning_columns(call: message.Message) -> set[int]:
    """Columns compared with constants by this call: one argument reads exactly one column."""
    arguments = list(call.argument_list)
    reads = [set(_column_ids(argument)) for argument in arguments]
    if sum(1 for columns in reads if columns) != 1:
        return set()
    columns = next(columns for columns in reads if columns)
    return columns if len(columns) == 1 else set()


def _column_ids(expression: message.Message) -> Iterator[int]:
    for ref in _walk(expression, "ResolvedColumnRefProto"):
        yield ref.column.column_id
    for _ in _walk(expression, "ResolvedSubqueryExprProto"):
        yield -1  # a subquery is no constant


def _walk(node: message.Message, type_name: str) -> Iterator[Any]:
    """Every message of type `type_name` inside `node` (itself included)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.DESCRIPTOR.name == type_name:
            yield current
        for descriptor, value in current.ListFields():
            if descriptor.message_type is None:
                continue
            if descriptor.is_repeated:
                stack.extend(value)
            else:
                stack.append(value)
