"""`flows-api` command line: generate, import, append and serve flow records."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flows_api import __version__
from flows_api.app import DEFAULT_LIMIT, MAX_LIMIT
from flows_api.db import (
    DatabaseError,
    connect_writable,
    create_index,
    insert_rows,
    last_position,
    row_count,
)
from flows_api.generate import generate_rows

log = logging.getLogger("flows_api")


def _generate(args: argparse.Namespace) -> int:
    conn = connect_writable(args.db)
    if row_count(conn):
        raise DatabaseError(
            f"{args.db} already holds rows; use 'flows-api append' or a new --db path"
        )
    started = time.monotonic()
    n = insert_rows(conn, generate_rows(args.rows, start_time=args.start_time, seed=args.seed))
    create_index(conn)
    log.info("generated %d rows into %s in %.1f s", n, args.db, time.monotonic() - started)
    return 0


def _append(args: argparse.Namespace) -> int:
    if not args.db.is_file():
        raise DatabaseError(f"database not found: {args.db}; create it with 'flows-api generate'")
    conn = connect_writable(args.db)
    last = last_position(conn)
    start_time, start_id = (args.start_time or 1, 1) if last is None else (last[0] + 1, last[1] + 1)
    n = insert_rows(
        conn, generate_rows(args.rows, start_time=start_time, start_id=start_id, seed=args.seed)
    )
    create_index(conn)
    log.info(
        "appended %d rows (ids %d..%d, time from %d) to %s",
        n,
        start_id,
        start_id + n - 1,
        start_time,
        args.db,
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    from flows_api.importer import import_flows

    if not args.source.is_file():
        raise DatabaseError(f"input file not found: {args.source}")
    conn = connect_writable(args.db)
    if row_count(conn):
        raise DatabaseError(f"{args.db} already holds rows; import into a new --db path")
    started = time.monotonic()
    report = import_flows(args.source, conn, progress=not args.no_progress)
    log.info(
        "imported %d rows into %s in %.1f s; skipped %d lines (%d without 9 fields, %d with "
        "non-integer numbers)",
        report.imported,
        args.db,
        time.monotonic() - started,
        report.skipped,
        report.skipped_field_count,
        report.skipped_not_integer,
    )
    for example in report.examples:
        log.info("skipped line example: %r", example)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from flows_api.server import serve

    api_key = args.api_key or os.environ.get("FLOWS_API_KEY") or None
    serve(
        args.db,
        args.host,
        args.port,
        api_key=api_key,
        workers=args.workers,
        threads=args.threads,
        max_limit=args.max_limit,
        default_limit=args.default_limit,
        access_log=args.access_log,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flows-api",
        description="LANL network-flow records: build a SQLite database, serve it as NDJSON.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="create a database of synthetic LANL-shaped rows")
    gen.add_argument("--rows", type=int, required=True, help="how many rows (ids 1..N)")
    gen.add_argument("--db", type=Path, required=True, help="SQLite file to create")
    gen.add_argument("--start-time", type=int, default=1, help="time of the first row (default 1)")
    gen.add_argument("--seed", type=int, default=0, help="random seed; same seed, same rows")
    gen.set_defaults(func=_generate)

    imp = sub.add_parser("import", help="import the real LANL flows.txt.gz")
    imp.add_argument("source", type=Path, help="flows.txt.gz (or uncompressed flows.txt)")
    imp.add_argument("--db", type=Path, required=True, help="SQLite file to create")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp.set_defaults(func=_import)

    app = sub.add_parser(
        "append", help="add N later rows (higher ids and times) for incremental runs"
    )
    app.add_argument("--rows", type=int, required=True, help="how many rows to add")
    app.add_argument("--db", type=Path, required=True, help="existing SQLite file")
    app.add_argument("--start-time", type=int, default=None, help="time of the first row if empty")
    app.add_argument("--seed", type=int, default=0, help="random seed")
    app.set_defaults(func=_append)

    srv = sub.add_parser("serve", help="serve GET /api/v1/stream/flows.json")
    srv.add_argument(
        "--db", type=Path, required=True, help="SQLite file to serve (opened read-only)"
    )
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    srv.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("FLOWS_API_PORT", "5055")),
        help="port (default $FLOWS_API_PORT or 5055)",
    )
    srv.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' (or set FLOWS_API_KEY)"
    )
    srv.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    srv.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
    srv.add_argument(
        "--max-limit",
        type=int,
        default=MAX_LIMIT,
        help=f"largest 'limit' a client may ask for (default {MAX_LIMIT})",
    )
    srv.add_argument(
        "--default-limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"'limit' when the client gives none (default {DEFAULT_LIMIT})",
    )
    srv.add_argument("--access-log", action="store_true", help="log every request")
    srv.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    args = _parser().parse_args(argv)
    for name in ("rows",):
        if getattr(args, name, 1) < 1:
            print(f"flows-api: error: --{name} must be >= 1", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except DatabaseError as exc:
        print(f"flows-api: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
