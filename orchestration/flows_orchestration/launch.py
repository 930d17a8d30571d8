"""`flows-orchestration backfill`: plan, launch and wait for a backfill, then check the table.

1. Resolve the tap's and target's configs through Meltano (api_url, dataset, ...).
2. Find Dagster at $DAGSTER_URL (default http://127.0.0.1:$DAGSTER_PORT); when nothing
   answers, start `dagster dev` there for the length of the backfill.
3. Plan: the job's partitions already stored in the instance are the plan (a rerun keeps
   its ranges); otherwise split [start, end) (found by probing the API when not given) and
   store the ranges as the job's dynamic partitions.
4. Set the backfill pool's limit (the concurrency), launch one Dagster backfill of the
   partitions without a successful run, and follow its runs until each has ended (a run
   retried by Dagster counts once it is final).
5. Compare the table's rows in the plan's range with the source database's.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from flows_orchestration.backfill_jobs import backfill_job_name
from flows_orchestration.check import (
    bigquery_client,
    flows_table,
    source_range_figures,
    table_range_figures,
)
from flows_orchestration.graphql import TERMINAL, DagsterClient, PartitionRun
from flows_orchestration.instance import BACKFILL_POOL, dagster_home, ensure_instance
from flows_orchestration.meltano import plugin_configs
from flows_orchestration.plan import SourceProbe, TimeRange, covered, split
from flows_orchestration.project import MeltanoJob, MeltanoProject, load_project
from flows_orchestration.server import answers, start_dagster

POLL_SECONDS = 2.0
WILL_RETRY_TAG = "dagster/will_retry"


class BackfillError(RuntimeError):
    """The backfill cannot start or did not complete; the message says what to do."""


@dataclass(frozen=True)
class BackfillRequest:
    """What `flows-orchestration backfill` was asked for."""

    job: str | None = None
    partitions: int = 4
    concurrency: int | None = None
    start_time: int | None = None
    end_time: int | None = None
    new_plan: bool = False
    check_db: Path | None = None
    url: str | None = None


def say(text: str) -> None:
    """Progress on stdout."""
    print(f"backfill: {text}", flush=True)


def dagster_url() -> str:
    """$DAGSTER_URL, else the webserver of `make orchestrate` on $DAGSTER_PORT."""
    return os.environ.get("DAGSTER_URL") or f"http://127.0.0.1:{dagster_port()}"


def dagster_port() -> int:
    """$DAGSTER_PORT (default 3000)."""
    return int(os.environ.get("DAGSTER_PORT", "3000"))


@contextlib.contextmanager
def dagster_at(url: str) -> Iterator[DagsterClient]:
    """A client of the Dagster at `url`, started there (and stopped after) if none answers."""
    if answers(url):
        client = DagsterClient(url)
        if not client.location_loaded():
            raise BackfillError(f"the Dagster at {url} has no loaded code location 'flows'")
        say(f"using the running Dagster at {url}")
        yield client
        return
    if not url.startswith("http://127.0.0.1:"):
        raise BackfillError(f"no Dagster answers at {url}")
    home = dagster_home()
    log = home / "dagster-dev.log"
    say(f"starting dagster dev on {url} (instance {home}, log {log})")
    service = start_dagster(int(url.rsplit(":", 1)[1]), log, home)
    try:
        yield DagsterClient(url)
    finally:
        say("stopping the dagster dev it started")
        service.stop()


def backfill_source(project: MeltanoProject, name: str | None) -> MeltanoJob:
    """The Meltano job to backfill: `name`, else the first job with one task."""
    if name:
        job = project.job(name)
        if len(job.tasks) != 1:
            raise BackfillError(f"job {job.name} has {len(job.tasks)} tasks; a backfill needs one")
        return job
    for job in project.jobs:
        if len(job.tasks) == 1:
            return job
    raise BackfillError("meltano.yml has no job with exactly one task to backfill")


def plan(
    instance: dg.DagsterInstance, job: str, request: BackfillRequest, tap: dict
) -> list[TimeRange]:
    """The stored plan of `job` (its dynamic partitions in the instance), or a new one stored now.

    A job's (not an asset's) dynamic partitions cannot be added through GraphQL, so the plan
    is written to the instance directly: the launcher runs where the instance is.
    """
    stored = sorted(TimeRange.from_key(key) for key in instance.get_dynamic_partitions(job))
    if stored and not request.new_plan:
        if len(stored) != request.partitions:
            start, end = covered(stored)
            raise BackfillError(
                f"the instance holds a backfill of {job} in {len(stored)} partitions over "
                f"[{start}, {end}); rerun with PARTITIONS={len(stored)} (--partitions), or "
                "plan a new one with --new-plan (NEW_PLAN=1)"
            )
        say(f"resuming the stored plan: [{covered(stored)[0]}, {covered(stored)[1]})")
        return stored
    for span in stored:
        instance.delete_dynamic_partition(job, span.key)
    start, end = request.start_time, request.end_time
    if start is None or end is None:
        found = SourceProbe(tap["api_url"], tap.get("api_key")).time_range()
        if found is None:
            return []
        start = found[0] if start is None else start
        end = found[1] if end is None else end
    spans = split(start, end, request.partitions)
    instance.add_dynamic_partitions(job, [span.key for span in spans])
    say(f"planned [{start}, {end}) in {len(spans)} partition(s), stored in the instance")
    return spans


def follow(client: DagsterClient, backfill_id: str, keys: set[str]) -> dict[str, PartitionRun]:
    """Wait until every partition of the backfill has a final run; the last run of each."""
    reported: dict[str, tuple[str, str]] = {}
    while True:
        latest: dict[str, PartitionRun] = {}
        retrying = False
        for run in client.backfill_runs(backfill_id):
            tags = {tag["key"]: tag["value"] for tag in run["tags"]}
            key = tags.get("dagster/partition")
            if key in keys:
                latest[key] = PartitionRun(key, run["runId"], run["status"])
                retrying = retrying or tags.get(WILL_RETRY_TAG) == "true"
        for key, run in sorted(latest.items()):
            if reported.get(key) != (run.run_id, run.status):
                reported[key] = (run.run_id or "", run.status or "")
                span = TimeRange.from_key(key)
                say(f"partition [{span.start}, {span.end}): {run.status} (run {run.run_id})")
        launched = client.backfill_status(backfill_id) != "REQUESTED"
        final = all(run.status in TERMINAL for run in latest.values())
        if launched and final and latest.keys() == keys and not retrying:
            return latest
        time.sleep(POLL_SECONDS)


def run_backfill(request: BackfillRequest) -> int:
    """Run (or resume) a backfill; 0 when every partition succeeded and the check passed."""
    project = load_project()
    job = backfill_source(project, request.job)
    (task,) = job.tasks
    name = backfill_job_name(job)
    tap, target = plugin_configs(project, task.extractor, task.loader)
    started = time.monotonic()
    os.environ["DAGSTER_HOME"] = str(ensure_instance())
    with dagster_at(request.url or dagster_url()) as client, dg.DagsterInstance.get() as instance:
        spans = plan(instance, name, request, tap)
        if not spans:
            say("the source has no rows; nothing to do")
            return 0
        limit = request.concurrency or len(spans)
        client.set_pool_limit(BACKFILL_POOL, limit)
        previous = {run.key: run.status for run in client.partition_runs(name)}
        pending = [span for span in spans if previous.get(span.key) != "SUCCESS"]
        for span in spans:
            if span not in pending:
                say(f"partition [{span.start}, {span.end}): done in an earlier backfill, skipped")
        if pending:
            backfill_id = client.launch_backfill(name, [span.key for span in pending], {})
            say(
                f"launched backfill {backfill_id} of {name}: {len(pending)} partition(s), "
                f"at most {limit} at a time; UI: {client.url}/runs/b/{backfill_id}"
            )
            runs = follow(client, backfill_id, {span.key for span in pending})
            failed = sorted(key for key, run in runs.items() if run.status != "SUCCESS")
            if failed:
                raise BackfillError(
                    f"{len(failed)} partition(s) failed: {', '.join(failed)}; run the same "
                    "command again to resume them from their last commit (the others are done)"
                )
    seconds = time.monotonic() - started
    say(f"all {len(spans)} partition(s) done in {seconds:.1f} s")
    start, end = covered(spans)
    table = flows_table(target)
    if request.check_db is None:
        say("no --check-db given: table not compared with the source")
        return 0
    actual = table_range_figures(bigquery_client(target), table, start, end)
    expected = source_range_figures(request.check_db, start, end)
    say(f"BigQuery {table} [{start}, {end}): {actual.describe()}")
    say(f"source   {request.check_db} [{start}, {end}): {expected.describe()}")
    if actual != expected:
        raise BackfillError("CHECK FAILED: the table differs from the source")
    say("OK: the table holds exactly the source rows")
    return 0
