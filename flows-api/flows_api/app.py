"""The HTTP API: streams flow records as NDJSON in `(time, id)` order.

Each response is produced from a SQLite cursor in chunks, so memory stays flat
whatever the result size; SQLite itself renders each row as JSON.
"""

from __future__ import annotations

import hmac
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Response, jsonify, request

from flows_api.db import COLUMNS, DatabaseError, connect_readonly

DEFAULT_LIMIT = 10_000
MAX_LIMIT = 1_000_000
_FETCH = 2_000
_PARAMETERS = ("since", "after_id", "until", "limit")
_DIGITS = re.compile(r"[0-9]{1,18}")
_ROW_JSON = "json_object(" + ", ".join(f"'{c}', {c}" for c in COLUMNS) + ")"


class BadRequestError(ValueError):
    """A query parameter is missing, malformed or out of range."""


@dataclass(frozen=True)
class FlowsQuery:
    """A validated request for one page of flows."""

    since: int | None
    after_id: int | None
    until: int | None
    limit: int

    def sql(self) -> tuple[str, list[int]]:
        """The parameterized SELECT for this page."""
        where: list[str] = []
        params: list[int] = []
        if self.after_id is not None:
            where.append("(time, id) > (?, ?)")
            params += [self.since, self.after_id]
        elif self.since is not None:
            where.append("time >= ?")
            params.append(self.since)
        if self.until is not None:
            where.append("time < ?")
            params.append(self.until)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        params.append(self.limit)
        return f"SELECT {_ROW_JSON} FROM flows {clause}ORDER BY time, id LIMIT ?", params


def _integer(name: str, raw: str | None, minimum: int) -> int | None:
    if raw is None:
        return None
    if not _DIGITS.fullmatch(raw):
        raise BadRequestError(f"'{name}' must be a non-negative integer, got {raw[:40]!r}")
    value = int(raw)
    if value < minimum:
        raise BadRequestError(f"'{name}' must be >= {minimum}, got {value}")
    return value


def parse_query(args: dict[str, list[str]], max_limit: int, default_limit: int) -> FlowsQuery:
    """Validate query parameters; raises BadRequestError with a message for the client."""
    repeated = sorted(name for name, values in args.items() if len(values) > 1)
    if repeated:
        raise BadRequestError(f"parameter(s) given more than once: {', '.join(repeated)}")
    single = {name: values[0] for name, values in args.items()}
    unknown = sorted(set(single) - set(_PARAMETERS))
    if unknown:
        raise BadRequestError(
            f"unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(_PARAMETERS)}"
        )
    since = _integer("since", single.get("since"), 0)
    after_id = _integer("after_id", single.get("after_id"), 0)
    until = _integer("until", single.get("until"), 0)
    limit = _integer("limit", single.get("limit"), 1)
    if after_id is not None and since is None:
        raise BadRequestError(
            "'after_id' needs 'since': together they are the (time, id) to resume after"
        )
    if limit is None:
        limit = default_limit
    elif limit > max_limit:
        raise BadRequestError(f"'limit' must be <= {max_limit}, got {limit}")
    return FlowsQuery(since=since, after_id=after_id, until=until, limit=limit)


def _stream(conn: sqlite3.Connection, query: FlowsQuery) -> Iterator[bytes]:
    sql, params = query.sql()
    try:
        cursor = conn.execute(sql, params)
        while rows := cursor.fetchmany(_FETCH):
            yield ("\n".join([r[0] for r in rows]) + "\n").encode()
    finally:
        conn.close()


def create_app(
    db_path: Path,
    api_key: str | None = None,
    max_limit: int = MAX_LIMIT,
    default_limit: int = DEFAULT_LIMIT,
) -> Flask:
    """Build the Flask app serving `db_path`; with `api_key`, every data request must carry it."""
    connect_readonly(db_path).close()
    app = Flask("flows_api")
    expected = f"Bearer {api_key}".encode() if api_key else None

    @app.before_request
    def check_key() -> tuple[Response, int] | None:
        if expected is None or request.path == "/healthz":
            return None
        given = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return None
        response = jsonify(error="missing or wrong API key: send 'Authorization: Bearer <key>'")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response, 401

    @app.get("/healthz")
    def healthz() -> Response:
        connect_readonly(db_path).close()
        return jsonify(status="ok")

    @app.get("/api/v1/stream/flows.json")
    def flows() -> Response | tuple[Response, int]:
        try:
            query = parse_query(request.args.to_dict(flat=False), max_limit, default_limit)
        except BadRequestError as exc:
            return jsonify(error=str(exc)), 400
        conn = connect_readonly(db_path)
        return Response(_stream(conn, query), mimetype="application/x-ndjson")

    @app.errorhandler(DatabaseError)
    def database_error(exc: DatabaseError) -> tuple[Response, int]:
        return jsonify(error=str(exc)), 503

    @app.errorhandler(404)
    def not_found(_exc: Exception) -> tuple[Response, int]:
        return jsonify(error=f"no such endpoint: {request.path}"), 404

    return app
