"""The Dagster code location through `dagster dev`: what the UI shows, what the daemon runs.

One `dagster dev` for the module, on the session's instance ($DAGSTER_HOME), with the
Meltano project's env vars pointed at this module's flows-api and a BigQuery proxy in front
of the session's emulator. The backfill runs for a tenant (acme) into one dataset, the
scheduled job into another, so each test's rows are its own.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dev_services.bigquery_proxy import BigQueryProxy, Rule
from dev_services.flows_api import start_flows_api
from dev_services.flows_check import source_figures, table_figures
from dev_services.process import Service, free_port
from dev_services.strict_bigquery import create_dataset
from flows_orchestration.check import source_range_figures, table_range_figures
from flows_orchestration.definitions import build_definitions
from flows_orchestration.graphql import REPOSITORY_SELECTOR, TERMINAL, DagsterClient
from flows_orchestration.plan import split
from flows_orchestration.project import load_project
from flows_orchestration.server import start_dagster

from tests.conftest import BIN, ROOT, generate_db

ROWS = 20_000
BACKFILL_JOB = "acme_to_bigquery_backfill"
SCHEDULE = "flows_to_bigquery_every_3h"


@dataclass
class Orchestra:
    """The module's services and where each test's rows go."""

    dagster: DagsterClient
    proxy: BigQueryProxy
    db: Path
    backfill_dataset: str
    scheduled_dataset: str
    backfill_states: Path
    meltano_states: Path
    env: dict[str, str]


def loader_env(prefix: str, proxy: BigQueryProxy, project: str, dataset: str, tmp: Path) -> dict:
    """A target-bigquery-lite (or tenant) pointed at the proxy: small batches, own dataset."""
    return {
        f"{prefix}_API_ENDPOINT": proxy.url,
        f"{prefix}_PROJECT": project,
        f"{prefix}_DATASET": dataset,
        f"{prefix}_BATCH_MAX_ROWS": "4000",
        f"{prefix}_STAGING_DIR": str(tmp / "staging"),
    }


@pytest.fixture(scope="module")
def orchestra(
    tmp_path_factory: pytest.TempPathFactory, dagster_home: Path, bigquery_emulator, bq_client
) -> Iterator[Orchestra]:
    tmp = tmp_path_factory.mktemp("orchestra")
    db = generate_db(tmp / "flows.db", ROWS, seed=47)
    api: Service = start_flows_api(db, tmp / "flows-api.log")
    datasets = [f"t_orchestra_{kind}_{os.getpid()}" for kind in ("backfill", "scheduled")]
    for dataset in datasets:  # as the harness's admin: the target runs with least privilege
        create_dataset(bigquery_emulator.url, dataset)
    proxy = BigQueryProxy(bigquery_emulator.url)
    proxy.start()
    env = {
        "TAP_FLOWS_API_URL": api.url,
        "TAP_FLOWS_PAGE_SIZE": "2000",
        "TAP_FLOWS__ACME_API_URL": api.url,
        "TAP_FLOWS__ACME_PAGE_SIZE": "2000",
        **loader_env("TARGET_BIGQUERY_LITE", proxy, bq_client.project, datasets[1], tmp),
        **loader_env("TARGET_BIGQUERY_LITE__ACME", proxy, bq_client.project, datasets[0], tmp),
        "MELTANO_STATE_BACKEND_URI": (tmp / "meltano-state").as_uri(),
        "FLOWS_BACKFILL_STATE_DIR": str(tmp / "backfill"),
        "FLOWS_RETRY_DELAY": "1",
    }
    dagster = start_dagster(free_port(), tmp / "dagster.log", dagster_home, env)
    try:
        yield Orchestra(
            DagsterClient(dagster.url),
            proxy,
            db,
            datasets[0],
            datasets[1],
            tmp / "backfill" / BACKFILL_JOB,
            tmp / "meltano-state",
            env,
        )
    finally:
        dagster.stop(timeout=30)
        proxy.stop()
        api.stop()
        for dataset in datasets:
            bq_client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def run_events(client: DagsterClient, run_id: str) -> list[dict]:
    """The event log of a run, as the UI's run page reads it."""
    data = client.query(
        """query($id: ID!) { logsForRun(runId: $id) { __typename
             ... on EventConnection { events { __typename
               ... on MessageEvent { message } ... on StepEvent { stepKey } } } } }""",
        id=run_id,
    )
    return data["logsForRun"]["events"]


def run_record(client: DagsterClient, run_id: str) -> dict:
    data = client.query(
        """query($id: ID!) { runOrError(runId: $id) {
             ... on Run { status startTime endTime tags { key value } } } }""",
        id=run_id,
    )
    return data["runOrError"]


def wait_for(condition, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_definitions_mirror_meltano_yml() -> None:
    defs = build_definitions(load_project())

    jobs = {job.name: job for job in defs.resolve_all_job_defs()}
    schedule = defs.resolve_schedule_def(SCHEDULE)

    assert {"flows_to_bigquery", "acme_to_bigquery", "globex_to_bigquery"} <= jobs.keys()
    assert {"flows_to_bigquery_backfill", BACKFILL_JOB} <= jobs.keys()
    assert jobs["acme_to_bigquery"].tags["meltano/state_id"] == (
        "dev:tap-flows--acme-to-target-bigquery-lite--acme"
    )
    assert schedule.cron_schedule == "0 */3 * * *"
    assert schedule.job_name == "flows_to_bigquery"


def test_a_killed_partition_is_retried_alone_and_graphql_shows_every_partition_succeeded(
    orchestra: Orchestra, bq_client
) -> None:
    client = orchestra.dagster
    figures = source_figures(orchestra.db)
    # Both partitions are held at their second MERGE: the first batch of each is committed
    # and its state saved. Then the first partition's pipe is killed and both are released.
    held = orchestra.proxy.add(
        Rule(
            "POST", r"/jobs", body=r"MERGE.*_bqlite_stage_\w+_000002_flows", action="hold", times=2
        )
    )
    command = [
        str(BIN / "flows-orchestration"), "backfill", "--job", "acme-to-bigquery",
        "--partitions", "2", "--url", client.url, "--check-db", str(orchestra.db),
        "--start-time", str(figures.min_time), "--end-time", str(figures.max_time + 1),
    ]  # fmt: skip
    launcher = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **orchestra.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: held.hits >= 2, "both partitions to reach their second MERGE")
        victim, _ = split(figures.min_time, figures.max_time + 1, 2)
        victim_pid = orchestra.backfill_states / f"{victim.key}.pid"
        state = json.loads((orchestra.backfill_states / f"{victim.key}.state.json").read_text())
        bookmark = state["bookmarks"]["flows"]["replication_key_value"]
        table = f"{orchestra.backfill_dataset}.flows"
        # the saved state is not ahead: every source row before it is in the table
        assert victim.start < bookmark < victim.end
        assert table_range_figures(bq_client, table, victim.start, bookmark) == (
            source_range_figures(orchestra.db, victim.start, bookmark)
        )
        os.killpg(int(victim_pid.read_text()), signal.SIGKILL)
        held.release()
        out, _ = launcher.communicate(timeout=300)
    finally:
        held.release()
        if launcher.poll() is None:
            launcher.kill()

    assert launcher.returncode == 0, out
    assert "OK: the table holds exactly the source rows" in out
    assert table_figures(bq_client, table) == figures
    partitions = {run.key: run for run in client.partition_runs(BACKFILL_JOB)}
    assert {key: run.status for key, run in partitions.items()} == dict.fromkeys(
        partitions, "SUCCESS"
    )
    assert victim.key in partitions
    for key, run in partitions.items():
        events = run_events(client, run.run_id)
        kinds = [event["__typename"] for event in events]
        messages = "\n".join(event.get("message") or "" for event in events)
        if key == victim.key:
            assert kinds.count("ExecutionStepUpForRetryEvent") == 1
            assert kinds.count("ExecutionStepRestartEvent") == 1
            assert "resuming from its saved state" in messages
        else:
            assert "ExecutionStepUpForRetryEvent" not in kinds
    victim_runs = client.query(
        """query($job: String!, $tags: [ExecutionTag!]) {
             runsOrError(filter: {pipelineName: $job, tags: $tags}) {
               ... on Runs { results { runId } } } }""",
        job=BACKFILL_JOB,
        tags=[{"key": "dagster/partition", "value": victim.key}],
    )["runsOrError"]["results"]
    assert len(victim_runs) == 1  # retried inside its own run, alone


def launch_tick(client: DagsterClient, tags: dict[str, str]) -> str:
    data = client.query(
        """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
             __typename ... on LaunchRunSuccess { run { runId } }
             ... on PythonError { message } } }""",
        params={
            "selector": {**REPOSITORY_SELECTOR, "jobName": "flows_to_bigquery"},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        },
    )
    assert data["launchRun"]["__typename"] == "LaunchRunSuccess", data
    return data["launchRun"]["run"]["runId"]


def test_two_schedule_ticks_for_one_state_id_run_one_after_the_other(
    orchestra: Orchestra, bq_client
) -> None:
    client = orchestra.dagster
    schedule = build_definitions(load_project()).resolve_schedule_def(SCHEDULE)
    ticks = []
    for hour in (3, 6):  # two consecutive ticks, as the daemon would evaluate them
        moment = datetime.datetime(2026, 1, 1, hour, tzinfo=datetime.UTC)
        with dg.build_schedule_context(scheduled_execution_time=moment) as context:
            (request,) = schedule.evaluate_tick(context).run_requests
        ticks.append(launch_tick(client, dict(request.tags)))

    seen: set[tuple[str, str]] = set()

    def both_done() -> bool:
        statuses = tuple(run_record(client, run_id)["status"] for run_id in ticks)
        seen.add(statuses)
        return all(status in TERMINAL for status in statuses)

    wait_for(both_done, "both scheduled runs to end", timeout=400)
    first, second = (run_record(client, run_id) for run_id in ticks)

    assert (first["status"], second["status"]) == ("SUCCESS", "SUCCESS")
    assert second["startTime"] >= first["endTime"]
    assert ("STARTED", "QUEUED") in seen  # the second tick waited in the queue
    assert not any(a in {"STARTING", "STARTED"} and b in {"STARTING", "STARTED"} for a, b in seen)
    tags = {tag["key"]: tag["value"] for tag in second["tags"]}
    assert tags["meltano/state_id"] == "dev:tap-flows-to-target-bigquery-lite"
    assert tags["dagster/schedule_name"] == SCHEDULE
    assert table_figures(bq_client, f"{orchestra.scheduled_dataset}.flows") == source_figures(
        orchestra.db
    )
    saved = json.loads(
        (orchestra.meltano_states / tags["meltano/state_id"] / "state.json").read_text()
    )
    flows = saved["completed"]["singer_state"]["bookmarks"]["flows"]
    assert flows["replication_key_value"] == source_figures(orchestra.db).max_time
    recorded = output_metadata(client, ticks[0])
    assert recorded["rows committed"] == ROWS
    assert recorded[f"bookmark {tags['meltano/state_id']}"] == str(flows["replication_key_value"])


def output_metadata(client: DagsterClient, run_id: str) -> dict:
    """The metadata a run's op recorded with its output (rows committed, bookmark, ...)."""
    data = client.query(
        """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
             __typename ... on ExecutionStepOutputEvent { metadataEntries { label
               ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text }
               ... on FloatMetadataEntry { floatValue } } } } } } }""",
        id=run_id,
    )
    (output,) = (
        event
        for event in data["logsForRun"]["events"]
        if event["__typename"] == "ExecutionStepOutputEvent"
    )
    return {
        entry["label"]: entry.get("intValue", entry.get("text", entry.get("floatValue")))
        for entry in output["metadataEntries"]
    }
