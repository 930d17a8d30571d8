"""A throw-away PostgreSQL cluster on 127.0.0.1, and the exact text of what its tables hold.

The cluster lives in a temporary folder, listens only on loopback on a free port, trusts
local connections (nothing else can reach it) and is stopped and deleted afterwards. As
root, the server runs as the `postgres` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dev_services.process import free_port

USER = "postgres"
# Postgres types whose text is stored as JSON (exact) rather than as Postgres' output text.
_JSON_TEXT_TYPES = frozenset({"json", "jsonb"})


class PostgresMissingError(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


@dataclass(frozen=True)
class Cluster:
    """A running cluster: where to connect and which binaries to use."""

    bindir: Path
    port: int
    database: str

    def psql(self, *args: str, stdin: str | None = None) -> str:
        """Run psql against the database (UTC, errors stop it) and return its output."""
        cmd = [str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"]
        cmd += ["-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", self.database]
        env = {**os.environ, "PGTZ": "UTC", "PGCLIENTENCODING": "UTF8"}
        proc = subprocess.run(
            [*cmd, *args], input=stdin, capture_output=True, text=True, env=env, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout

    def version(self) -> str:
        """The server's version string."""
        return self.psql("-c", "SHOW server_version").strip()


def find_bindir() -> Path:
    """The folder holding initdb, pg_ctl, postgres and psql.

    Raises:
        PostgresMissingError: when no PostgreSQL server is installed.
    """
    candidates = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
    if initdb := shutil.which("initdb"):
        candidates.insert(0, Path(initdb).resolve().parent)
    for bindir in candidates:
        if all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "postgres", "psql")):
            return bindir
    raise PostgresMissingError(
        "recording the tap fixtures needs a local PostgreSQL server (initdb, pg_ctl, postgres, "
        "psql), e.g. `apt-get install postgresql` on Debian; `make test` does not need it"
    )


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", USER, "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def running_cluster(database: str, source_sql: Path) -> Iterator[Cluster]:
    """Start a fresh cluster, create `database` from `source_sql`, stop and delete it after."""
    bindir = find_bindir()
    with tempfile.TemporaryDirectory(prefix="tap-fixtures-pg-") as tmp:
        root = Path(tmp)
        if os.geteuid() == 0:
            account = pwd.getpwnam(USER)
            os.chown(root, account.pw_uid, account.pw_gid)
        data, log = root / "data", root / "server.log"
        subprocess.run(
            _as_server_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-A",
                    "trust",
                    "-U",
                    USER,
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            capture_output=True,
        )
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c TimeZone=UTC"
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log)]
        subprocess.run(
            _as_server_user([*pg_ctl, "-o", options, "-w", "start"]),
            check=True,
            capture_output=True,
        )
        try:
            admin = Cluster(bindir, port, "postgres")
            admin.psql("-c", f'CREATE DATABASE "{database}"')
            cluster = Cluster(bindir, port, database)
            cluster.psql("-f", str(source_sql))
            yield cluster
        finally:
            subprocess.run(
                _as_server_user([*pg_ctl, "-m", "fast", "-w", "stop"]),
                capture_output=True,
                check=False,
            )


def table_contents(cluster: Cluster, table: str, key: list[str], where: str = "") -> dict[str, Any]:
    """Every cell of `table` as exact text, with its column types and the sums of its numerics.

    A cell is null or a string: Postgres' own output text (`format('%s', v)`, which keeps
    char(n) padding), or, for json, jsonb and array columns, JSON text (arrays through
    `to_jsonb`, so their NULL elements stay visible). Rows are ordered by the key.
    """
    columns = [
        line.split("\t")
        for line in cluster.psql(
            "-F",
            "\t",
            "-c",
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            f"WHERE a.attrelid = 'public.{table}'::regclass AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum",
        ).splitlines()
    ]
    cells, described = [], []
    for name, pg_type, category in columns:
        ident = '"' + name.replace('"', '""') + '"'
        if category == "A":
            cells.append(f"to_jsonb({ident})::text")
            form = "json"
        elif pg_type in _JSON_TEXT_TYPES:
            cells.append(f"{ident}::text")
            form = "json"
        else:
            cells.append(f"CASE WHEN {ident} IS NULL THEN NULL ELSE format('%s', {ident}) END")
            form = "text"
        described.append({"name": name, "type": pg_type, "form": form})
    order = ", ".join('"' + k + '"' for k in key)
    condition = f"WHERE {where}" if where else ""
    rows_sql = (
        f"SELECT coalesce(json_agg(json_build_array({', '.join(cells)}) ORDER BY {order}), '[]') "
        f"FROM public.{table} {condition}"
    )
    rows = json.loads(cluster.psql("-c", rows_sql))
    numeric = [c["name"] for c in described if c["type"].startswith("numeric")]
    sums: dict[str, str | None] = {}
    if numeric:
        sums_sql = "SELECT json_build_array({}) FROM public.{} {}".format(
            ", ".join(f'SUM("{name}")::text' for name in numeric), table, condition
        )
        sums = dict(zip(numeric, json.loads(cluster.psql("-c", sums_sql)), strict=True))
    return {
        "table": f"public.{table}",
        "where": where or None,
        "key": key,
        "columns": described,
        "rows": [dict(zip([c["name"] for c in described], row, strict=True)) for row in rows],
        "sums": sums,
    }
