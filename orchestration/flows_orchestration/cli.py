"""`flows-orchestration backfill|dev|screenshot`: the Makefile's orchestration targets.

flows-orchestration backfill --partitions 4 [--concurrency 2] [--check-db .run/flows.db]
flows-orchestration dev                       # dagster dev on 127.0.0.1:$DAGSTER_PORT
flows-orchestration screenshot --out .run/dagster-partitions.png
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dev_services.process import ServiceError

from flows_orchestration.graphql import DagsterApiError
from flows_orchestration.launch import BackfillError, BackfillRequest, dagster_port, run_backfill
from flows_orchestration.meltano import MeltanoError
from flows_orchestration.project import ProjectError
from flows_orchestration.screenshot import ScreenshotError, take_screenshot
from flows_orchestration.server import exec_dagster_dev


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line."""
    root = argparse.ArgumentParser(prog="flows-orchestration", description=__doc__.splitlines()[0])
    sub = root.add_subparsers(dest="command", required=True)
    backfill = sub.add_parser("backfill", help="run (or resume) the partitioned backfill")
    backfill.add_argument("--job", help="Meltano job to backfill (default: the first one)")
    backfill.add_argument("--partitions", type=positive, default=4, help="time ranges (4)")
    backfill.add_argument("--concurrency", type=positive, help="at most this many at a time (all)")
    backfill.add_argument("--start-time", type=int, help="first time (default: the source's)")
    backfill.add_argument("--end-time", type=int, help="exclusive end (default: after the last)")
    backfill.add_argument("--new-plan", action="store_true", help="replace the stored plan")
    backfill.add_argument("--check-db", type=Path, help="flows-api SQLite file to compare with")
    backfill.add_argument("--url", help="Dagster webserver ($DAGSTER_URL, :$DAGSTER_PORT)")
    sub.add_parser("dev", help="dagster dev on 127.0.0.1:$DAGSTER_PORT (foreground)")
    shot = sub.add_parser("screenshot", help="the backfill's partitions page, with Chromium")
    shot.add_argument("--out", type=Path, required=True, help="PNG file to write")
    shot.add_argument("--job", help="Meltano job whose backfill to show (default: the first)")
    shot.add_argument("--url", help="Dagster webserver (default: :$DAGSTER_PORT)")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; errors are one line on stderr, exit 1."""
    args = parser().parse_args(argv)
    try:
        if args.command == "dev":
            exec_dagster_dev(dagster_port())
        if args.command == "screenshot":
            take_screenshot(args.out, args.job, args.url)
            return 0
        return run_backfill(
            BackfillRequest(
                job=args.job,
                partitions=args.partitions,
                concurrency=args.concurrency,
                start_time=args.start_time,
                end_time=args.end_time,
                new_plan=args.new_plan,
                check_db=args.check_db,
                url=args.url,
            )
        )
    except (
        BackfillError,
        DagsterApiError,
        MeltanoError,
        ProjectError,
        ScreenshotError,
        ServiceError,
    ) as exc:
        print(f"flows-orchestration: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flows-orchestration: interrupted; rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
