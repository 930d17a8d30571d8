"""Command line: argv -> settings -> `Runner.run`; errors become one line and an exit code.

Subcommands: `target-bigquery-lite rebuild ...` (see `rebuild.py`) and `compact ...` (see
`compact.py`).

Exit codes: 0 success; 1 a failed run (bad input, BigQuery error); 2 bad usage or config;
128 + n when stopped by signal n (SIGINT 130, SIGTERM 143). stdout carries only STATE lines;
everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from target_bigquery_lite.about import NAME, package_version, render
from target_bigquery_lite.config import load_settings
from target_bigquery_lite.errors import StopSignalError, TargetError
from target_bigquery_lite.runner import Runner

log = logging.getLogger("target_bigquery_lite")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line options (singer-sdk's names, for Meltano)."""
    parser = argparse.ArgumentParser(
        prog=NAME,
        description="Load Singer messages (stdin or --input) into BigQuery; STATE goes to stdout "
        "only after the records before it are committed.",
        epilog=f"{NAME} rebuild --help: reload a table from its Cloud Storage archive. "
        f"{NAME} compact --help: trim a dedup_view stream's raw table to its view's rows.",
    )
    parser.add_argument("--config", type=Path, help="JSON config file")
    parser.add_argument("--input", type=Path, help="read Singer messages from this file")
    parser.add_argument("--about", action="store_true", help="describe the target and exit")
    parser.add_argument(
        "--format", choices=("json", "markdown"), default="json", help="output format of --about"
    )
    parser.add_argument("--version", action="version", version=f"{NAME} {package_version()}")
    return parser.parse_args(argv)


def _raise_stop(signal_number: int, _frame: FrameType | None) -> None:
    raise StopSignalError(signal_number, signal.Signals(signal_number).name)


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("TARGET_BIGQUERY_LITE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s " + NAME + ": %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("google").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Run the target (or its `rebuild` or `compact` subcommand); return the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["rebuild"]:
        from target_bigquery_lite import rebuild  # its imports cost start-up time otherwise

        _configure_logging()
        return rebuild.main(argv[1:])
    if argv[:1] == ["compact"]:
        from target_bigquery_lite import compact

        _configure_logging()
        return compact.main(argv[1:])
    return _run(parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    if args.about:
        print(render(args.format))
        return 0
    _configure_logging()
    if args.config is None:
        log.error("--config is required (a JSON file with at least project and dataset)")
        return 2
    runner: Runner | None = None
    try:
        settings, warnings = load_settings(args.config)
        for warning in warnings:
            log.warning(warning)
        signal.signal(signal.SIGTERM, _raise_stop)
        signal.signal(signal.SIGINT, _raise_stop)
        runner = Runner(settings, sys.stdout.buffer)
        if args.input is not None:
            with args.input.open("rb") as source:
                runner.run(source.fileno())
        else:
            runner.run(sys.stdin.fileno())
    except (TargetError, StopSignalError) as exc:
        log.error("%s", exc)
        _report_kept_files(runner)
        return exc.exit_code
    except BrokenPipeError:
        _silence_stdout()
        log.error("stdout was closed (broken pipe): nobody reads the state any more; stopping")
        _report_kept_files(runner)
        return 1
    except OSError as exc:
        log.error("%s", exc)
        _report_kept_files(runner)
        return 1
    return 0


def _report_kept_files(runner: Runner | None) -> None:
    files = runner.kept_files() if runner is not None else []
    if files:
        log.error("staging files kept for inspection: %s", ", ".join(str(f) for f in files))
    objects = runner.warehouse.pending_objects() if runner is not None else []
    if objects:
        log.error("objects of uncommitted batches kept: %s", ", ".join(objects))


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
