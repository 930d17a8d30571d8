"""`dev-services up|down|status`: the local services in the background, for `make up/down`.

PID files and logs live under .run/. `down` stops exactly the PIDs recorded by `up`
(checking each is still the program it started) and is safe to run twice.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from dev_services.bigquery_emulator import DEFAULT_PROJECT, start_bigquery_emulator
from dev_services.flows_api import flows_api_command, start_flows_api
from dev_services.gcs_server import ensure_bucket, start_gcs_server, storage_client
from dev_services.process import RUN_DIR, Service, ServiceError, pid_alive, port_is_open, stop_pid

# name -> a word of its command line (so `down` never stops a program that reused the PID)
MARKERS = {
    "flows-api": "flows-api",
    "gcs-server": "fake-gcs-server",
    "bigquery-emulator": "local-bigquery",
}


def _pid_file(name: str) -> Path:
    return RUN_DIR / f"{name}.pid"


def _recorded_pid(name: str) -> int | None:
    """The PID from `up` if that process is still alive and still the service it was."""
    try:
        pid = int(_pid_file(name).read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        cmdline = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except FileNotFoundError:
        return None
    return pid if pid_alive(pid) and MARKERS[name] in cmdline else None


def _start(name: str, port: int, starter: Callable[[], Service]) -> None:
    pid = _recorded_pid(name)
    if pid is not None:
        print(f"{name}: already running (pid {pid}) on port {port}")
        return
    if port_is_open(port):
        raise ServiceError(
            f"{name}: port {port} is already in use by another program; "
            f"stop it or choose another port (see README: 'make up')"
        )
    service = starter()
    _pid_file(name).write_text(f"{service.pid}\n")
    print(f"{name}: {service.url} (pid {service.pid}, log {service.log_path})")


def _ensure_db(db: Path, rows: int) -> None:
    if db.is_file():
        return
    print(f"flows-api: generating {rows:,} demo rows into {db}")
    subprocess.run(
        [flows_api_command(), "generate", "--rows", str(rows), "--db", str(db)], check=True
    )


def up(args: argparse.Namespace) -> int:
    """Start the services unless they already run; Cloud Storage before BigQuery, which reads it."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    _ensure_db(args.db, args.rows)
    _start(
        "flows-api",
        args.flows_port,
        lambda: start_flows_api(
            args.db,
            RUN_DIR / "flows-api.log",
            port=args.flows_port,
            api_key=os.environ.get("FLOWS_API_KEY") or None,
        ),
    )
    gcs_url = f"http://127.0.0.1:{args.gcs_port}"
    _start(
        "gcs-server",
        args.gcs_port,
        lambda: start_gcs_server(
            RUN_DIR / "gcs-data", RUN_DIR / "gcs-server.log", port=args.gcs_port
        ),
    )
    ensure_bucket(storage_client(gcs_url, args.project), args.bucket)
    print(f"gcs-server: bucket gs://{args.bucket} (STORAGE_EMULATOR_HOST={gcs_url})")
    _start(
        "bigquery-emulator",
        args.bq_port,
        lambda: start_bigquery_emulator(
            RUN_DIR / "bq-data",
            RUN_DIR / "bigquery-emulator.log",
            port=args.bq_port,
            project=args.project,
            storage_emulator=gcs_url,
        ),
    )
    return 0


def down(_args: argparse.Namespace) -> int:
    """Stop the services `up` started; nothing else."""
    for name in MARKERS:
        pid = _recorded_pid(name)
        if pid is None:
            print(f"{name}: not running")
        else:
            stop_pid(pid)
            print(f"{name}: stopped (pid {pid})")
        _pid_file(name).unlink(missing_ok=True)
    return 0


def status(_args: argparse.Namespace) -> int:
    """Print which services run; exit 1 if any is down."""
    running = 0
    for name in MARKERS:
        pid = _recorded_pid(name)
        print(f"{name}: {f'running (pid {pid})' if pid else 'not running'}")
        running += pid is not None
    return 0 if running == len(MARKERS) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="dev-services", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser(
        "up", help="start flows-api, Cloud Storage and the BigQuery emulator in the background"
    )
    p_up.add_argument(
        "--flows-port", type=int, default=int(os.environ.get("FLOWS_API_PORT", "5055"))
    )
    p_up.add_argument(
        "--bq-port", type=int, default=int(os.environ.get("BQ_EMULATOR_PORT", "9050"))
    )
    p_up.add_argument(
        "--gcs-port", type=int, default=int(os.environ.get("GCS_EMULATOR_PORT", "4443"))
    )
    p_up.add_argument(
        "--bucket",
        default=os.environ.get("GCS_BUCKET", "flows-local"),
        help="bucket to create in the local Cloud Storage (for gcs_bucket)",
    )
    p_up.add_argument("--project", default=os.environ.get("BQ_PROJECT", DEFAULT_PROJECT))
    p_up.add_argument(
        "--db", type=Path, default=Path(os.environ.get("FLOWS_DB", RUN_DIR / "flows.db"))
    )
    p_up.add_argument(
        "--rows",
        type=int,
        default=int(os.environ.get("DEMO_ROWS", "1000000")),
        help="rows to generate when the database does not exist yet",
    )
    p_up.set_defaults(func=up)
    sub.add_parser("down", help="stop what 'up' started").set_defaults(func=down)
    sub.add_parser("status", help="show what runs").set_defaults(func=status)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ServiceError, FileNotFoundError, subprocess.CalledProcessError) as exc:
        print(f"dev-services: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
