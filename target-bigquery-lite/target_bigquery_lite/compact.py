"""`target-bigquery-lite compact`: cut a `dedup_view` stream's raw table down to its view's rows.

The raw table keeps every row ever loaded (re-sent ones, superseded ones), and every query
of the view pays for reading them. Compaction deletes the rows the view does not show, in
one statement, so readers see the table before or after it, never a mix:

    DELETE FROM `<table>_raw`
    WHERE `_bqlite_seq` NOT IN (SELECT `_bqlite_seq` FROM `<table>` WHERE ... IS NOT NULL)

The view is the one definition of "the latest row per key", so compaction cannot disagree
with it: the view's rows stay exactly as they were. A DELETE keeps the table's schema,
partitioning, clustering, labels and descriptions (a `CREATE OR REPLACE TABLE` would not),
and a row appended while it runs is not in its snapshot, so it is kept.

Compaction refuses while a run of the target may be loading: a run holds a lock on its
folder under `staging_dir` from its first staged record until it ends (see `stage.py`), so
run `compact` with the target's config on the machine the target runs on. It also refuses
a stream that is not loaded with `dedup_view`, or whose view does not deduplicate (no key
properties).
"""

from __future__ import annotations

import argparse
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

from target_bigquery_lite.columns import SEQUENCE_COLUMN
from target_bigquery_lite.config import Settings, load_settings
from target_bigquery_lite.connection import make_client
from target_bigquery_lite.errors import ConfigError, TargetError
from target_bigquery_lite.identifiers import (
    IdentifierError,
    quote,
    quote_table,
    shown,
    table_name,
)
from target_bigquery_lite.jobs import API_TIMEOUT_SECONDS, JobRunner, step_name
from target_bigquery_lite.load_methods.dedup_view import raw_table_name
from target_bigquery_lite.stage import live_runs
from target_bigquery_lite.tables import Tables

log = logging.getLogger("target_bigquery_lite")


def build_compact_sql(raw: str, view: str) -> str:
    """DELETE the rows of `raw` whose `_bqlite_seq` the view `view` does not show."""
    seq = quote(SEQUENCE_COLUMN)
    return (
        f"DELETE FROM {raw}\nWHERE {seq} NOT IN (SELECT {seq} FROM {view} WHERE {seq} IS NOT NULL)"
    )


def compact(settings: Settings, stream: str) -> str:
    """Compact the raw table of `stream`; return the line to print.

    Raises:
        ConfigError: for a bad stream name, or while a run of the target is alive.
        TargetError: when the stream is not a deduplicating `dedup_view` stream, or the
            statement fails.
    """
    try:
        view = table_name(stream, settings.table_prefix)
        raw = raw_table_name(view)
        quote_table(settings.project, settings.dataset, raw)
    except IdentifierError as exc:
        raise ConfigError(f"compact: {exc}") from None
    running = live_runs(Path(settings.staging_dir))
    if running:
        raise ConfigError(
            f"compact: a run of the target is in progress (it holds {running[0]}); run "
            "compact when no load is running"
        )
    run_id = f"compact_{datetime.now(UTC):%Y%m%d%H%M%S}_{uuid.uuid4().hex[:8]}"
    tables = Tables(JobRunner(make_client(settings), run_id, settings.max_retries), settings)
    dataset = tables.runner.call(
        f"get dataset {settings.project}.{settings.dataset}",
        lambda: tables.client.get_dataset(
            f"{settings.project}.{settings.dataset}", retry=None, timeout=API_TIMEOUT_SECONDS
        ),
    )  # jobs are created and polled in the dataset's location
    client = make_client(settings, dataset.location)
    tables = Tables(JobRunner(client, run_id, settings.max_retries), settings)
    _check_stream(tables, stream, view, raw)
    raw_sql = quote_table(settings.project, settings.dataset, raw)
    sql = build_compact_sql(raw_sql, quote_table(settings.project, settings.dataset, view))
    removed = tables.runner.query(step_name(None, raw, "compact"), sql).num_dml_affected_rows
    count = tables.runner.query(step_name(None, raw, "count"), f"SELECT COUNT(*) FROM {raw_sql}")
    left = next(iter(count.result(timeout=API_TIMEOUT_SECONDS)))[0]  # free: table metadata
    return (
        f"compacted {settings.dataset}.{raw}: removed {removed or 0:,} rows, {left:,} left "
        f"(the rows of view {view} are unchanged)"
    )


def _check_stream(tables: Tables, stream: str, view: str, raw: str) -> None:
    """Refuse unless `view` is a deduplicating view of `raw`, as `dedup_view` makes them.

    Raises:
        TargetError: naming what is missing or different.
    """
    found, raw_table = tables.get(view), tables.get(raw)
    if found is None or raw_table is None:
        raise TargetError(
            f"compact: stream '{shown(stream)}' has no view {view} over a table {raw} in "
            f"{tables.dataset}; is it loaded with load_method dedup_view (and this table_prefix)?"
        )
    query = found.view_query or ""
    if found.table_type != "VIEW" or f"`{raw}`" not in query:
        raise TargetError(f"compact: {view} is not the dedup_view view of {raw}; nothing compacted")
    if "QUALIFY" not in query:
        raise TargetError(
            f"compact: stream '{shown(stream)}' has no key properties, so its view shows every "
            f"row of {raw}; there is nothing to compact"
        )


def main(argv: list[str]) -> int:
    """`compact --config CONFIG --stream NAME`."""
    parser = argparse.ArgumentParser(
        prog="target-bigquery-lite compact",
        description="Delete the rows of a dedup_view stream's <table>_raw that its view "
        "<table> does not show (superseded and re-sent rows), in one atomic statement. The "
        "view's rows stay the same; queries of the view read less afterwards. Refused while a "
        "run of the target holds a staging folder under the config's staging_dir.",
    )
    parser.add_argument("--config", type=Path, required=True, help="the target's JSON config")
    parser.add_argument("--stream", required=True, help="the stream (its table is derived)")
    args = parser.parse_args(argv)
    try:
        settings, warnings = load_settings(args.config)
        for warning in warnings:
            log.warning(warning)
        line = compact(settings, args.stream)
    except TargetError as exc:
        log.error("%s", exc)
        return exc.exit_code
    print(line, flush=True)
    return 0
