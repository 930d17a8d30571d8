"""Record real taps' output as target-bigquery-lite test fixtures (`make tap-fixtures`).

    .venv/bin/python scripts/record-tap-fixtures.py [--out DIR] [--only NAME,...]

Needs a local PostgreSQL server (initdb, pg_ctl, postgres, psql; e.g. `apt-get install
postgresql`) and uv from `make install`; `make test` needs neither, the recordings are checked
in. It starts a throw-away cluster on 127.0.0.1 (free port, trust auth, deleted afterwards),
loads `postgres_source.sql`, installs meltanolabs-tap-postgres, pipelinewise-tap-postgres
and tap-dbf from PyPI into `.run/taps/<tap>/`, and writes into the output folder:

- `<tap>__<scenario>.singer`: the tap's stdout, byte for byte (BATCH files under `batches/`);
- `<source>__<table>.expected.json`: what the source holds, every cell as exact text, with
  its type, and the exact sums of the decimal columns (computed by Postgres);
- `fixtures.json`: for each fixture its tap and version, stream, settings, state and
  expected-values file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tap_fixtures import dbf, postgres, taps
from tap_fixtures.expected import write_expected

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "target-bigquery-lite" / "tests" / "data" / "taps"
DATABASE = "tapsrc"
DBF_ROWS = 200

MELTANOLABS = taps.Tap(
    "meltanolabs-tap-postgres", ("meltanolabs-tap-postgres==0.10.0",), "tap-postgres"
)
PIPELINEWISE = taps.Tap(
    "pipelinewise-tap-postgres",
    ("pipelinewise-tap-postgres==1.8.4",),
    "tap-postgres",
    catalog_flag="--properties",
)
TAP_DBF = taps.Tap("tap-dbf", ("tap-dbf==0.1.25",), "tap-dbf")

# table -> primary key; pipelinewise-tap-postgres 1.8.4 crashes on a fractional timetz
# (ValueError in strptime), so fractional_times is recorded with meltanolabs only. No
# `use_singer_decimal` scenario: meltanolabs-tap-postgres 0.10.0 ignores that setting (its
# PostgresSQLToJSONSchema.from_config drops it), numerics stay plain `number`s.
TABLES = {
    "typed": ["id"],
    "fractional_times": ["id"],
    "int_matrix": ["id"],
    "special_floats": ["id"],
    "special_numerics": ["id"],
    "odd_columns": ["Region Code", "Order No"],
    "decimals": ["id"],
}
INCREMENTAL_FROM = "2024-01-01T00:00:04+00:00"


def postgres_recordings(port: int) -> list[tuple[taps.Recording, str, str]]:
    """(recording, table, WHERE clause of the rows it holds) for both Postgres taps."""
    ml = {
        "host": "127.0.0.1",
        "port": port,
        "user": postgres.USER,
        "password": "",
        "database": DATABASE,
        "filter_schemas": ["public"],
    }
    pw = {
        "host": "127.0.0.1",
        "port": port,
        "user": postgres.USER,
        "password": "",
        "dbname": DATABASE,
        "filter_schemas": "public",
    }
    found: list[tuple[taps.Recording, str, str]] = []
    for table in TABLES:
        stream = (f"public-{table}",)
        found.append(
            (taps.Recording(f"{MELTANOLABS.name}__{table}", MELTANOLABS, ml, stream), table, "")
        )
        if table != "fractional_times":
            found.append(
                (
                    taps.Recording(f"{PIPELINEWISE.name}__{table}", PIPELINEWISE, pw, stream),
                    table,
                    "",
                )
            )
    # BATCH of the typed table crashes the tap (raw bytea bytes reach its JSON encoder)
    found.append(
        (
            taps.Recording(
                f"{MELTANOLABS.name}__decimals_batch",
                MELTANOLABS,
                ml,
                ("public-decimals",),
                batch=True,
            ),
            "decimals",
            "",
        )
    )
    incremental = taps.Recording(
        f"{MELTANOLABS.name}__typed_incremental",
        MELTANOLABS,
        ml,
        ("public-typed",),
        replication={"replication-method": "INCREMENTAL", "replication-key": "updated_at"},
        state={
            "bookmarks": {
                "public-typed": {
                    "replication_key": "updated_at",
                    "replication_key_value": INCREMENTAL_FROM,
                }
            }
        },
    )
    found.append((incremental, "typed", f"updated_at >= '{INCREMENTAL_FROM}'"))
    return found


def entry(recording: taps.Recording, expected: str, version: str) -> dict[str, Any]:
    """The manifest entry of one fixture (connection settings left out)."""
    connection = {"host", "port", "user", "password", "database", "dbname", "path"}
    return {
        "tap": version,
        "streams": list(recording.streams),
        "settings": {k: v for k, v in recording.config.items() if k not in connection},
        "replication": recording.replication,
        "state": recording.state,
        "batch": recording.batch,
        "expected": expected,
    }


def main(argv: list[str] | None = None) -> int:
    """Record every fixture (or those named by --only) and rewrite the manifest."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=OUT, help="fixture folder (default: %(default)s)"
    )
    parser.add_argument("--only", default="", help="comma-separated fixture names to record")
    args = parser.parse_args(argv)
    only = {name for name in args.only.split(",") if name}
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "fixtures.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    fixtures: dict[str, Any] = manifest.get("fixtures", {})
    try:
        bindir = postgres.find_bindir()
    except postgres.PostgresMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"PostgreSQL binaries: {bindir}", file=sys.stderr)
    for tap in (MELTANOLABS, PIPELINEWISE, TAP_DBF):
        taps.install(tap)
    versions = {tap.name: taps.version(tap) for tap in (MELTANOLABS, PIPELINEWISE, TAP_DBF)}
    with postgres.running_cluster(DATABASE, out / "postgres_source.sql") as cluster:
        manifest["postgres"] = f"PostgreSQL {cluster.version()}"
        for recording, table, where in postgres_recordings(cluster.port):
            if only and recording.fixture not in only:
                continue
            suffix = "__incremental" if where else ""
            expected = f"postgres__{table}{suffix}.expected.json"
            contents = postgres.table_contents(cluster, table, TABLES[table], where)
            write_expected(out / expected, contents)
            taps.record(recording, out)
            fixtures[recording.fixture] = entry(recording, expected, versions[recording.tap.name])
            print(f"recorded {recording.fixture}", file=sys.stderr)
    fixture = f"{TAP_DBF.name}__flows"
    if not only or fixture in only:
        record_dbf(out, fixtures, versions[TAP_DBF.name])
    manifest["fixtures"] = dict(sorted(fixtures.items()))
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


def record_dbf(out: Path, fixtures: dict[str, Any], version: str) -> None:
    """Write flows.dbf from flows-api's generated rows and record tap-dbf reading it."""
    with tempfile.TemporaryDirectory(prefix="tap-fixtures-dbf-") as tmp:
        rows = [
            dbf.dbf_values(flow)
            for flow in dbf.flows_rows(ROOT / ".venv" / "bin" / "flows-api", DBF_ROWS, Path(tmp))
        ]
    dbf.write_dbf(out / "flows.dbf", rows)
    expected = "dbf__flows.expected.json"
    write_expected(out / expected, dbf.dbf_contents(rows))
    recording = taps.Recording(
        f"{TAP_DBF.name}__flows",
        TAP_DBF,
        {"path": str(out / "flows.dbf"), "ignore_missing_memofile": True},
        ("flows",),
    )
    path = taps.record(recording, out)
    path.write_bytes(path.read_bytes().replace(str(out).encode(), taps.TAPS_DIR_TOKEN.encode()))
    fixtures[recording.fixture] = entry(recording, expected, version)
    print(f"recorded {recording.fixture}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
