"""The partitioned backfill as Dagster runs it, in-process: each partition one pipe, one state.

BigQuery may abort one of two concurrent MERGEs into a table ("Could not serialize access
... due to concurrent update"); the emulator serializes them and never does, so the error
is injected through `BigQueryProxy`. Killed and retried partitions, through the webserver
and the daemon, are in test_orchestration.py.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from dev_services.bigquery_proxy import BigQueryProxy, Rule
from dev_services.flows_check import source_figures, table_figures
from flows_orchestration.backfill_jobs import partition_state_id
from flows_orchestration.definitions import build_definitions
from flows_orchestration.pipe import PartitionPipe
from flows_orchestration.plan import TimeRange, covered, split
from flows_orchestration.project import load_project

from tests.conftest import generate_db

ROWS = 20_000
CONCURRENT_UPDATE = "Could not serialize access to table flows due to concurrent update"


def test_a_range_splits_into_contiguous_keys_that_parse_back() -> None:
    spans = split(1, 11_979, 4)

    assert [span.key for span in spans] == ["1-2995", "2995-5990", "5990-8984", "8984-11979"]
    assert [TimeRange.from_key(span.key) for span in spans] == spans
    assert covered(spans) == (1, 11_979)
    assert split(5, 7, 4) == [TimeRange(5, 6), TimeRange(6, 7)]
    with pytest.raises(ValueError, match="'x-1' is not '<start>-<end>'"):
        TimeRange.from_key("x-1")


def test_each_partition_has_its_own_state_id_and_run_tag() -> None:
    project = load_project()
    job = build_definitions(project).resolve_job_def("acme_to_bigquery_backfill")
    (task,) = project.job("acme-to-bigquery").tasks

    tags = job.partitioned_config.get_tags_for_partition_key("10-20")  # type: ignore[union-attr]

    expected = "dev:tap-flows--acme-to-target-bigquery-lite--acme:backfill-10-20"
    assert partition_state_id(task, "dev", "10-20") == expected
    assert tags["meltano/state_id"] == expected


def test_two_partitions_materialized_in_process_hold_exactly_the_source_rows(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dagster_home: Path,
    start_flows_api_service,
    bigquery_emulator,
    bq_client,
    bq_dataset,
) -> None:
    db = generate_db(tmp_path / "flows.db", ROWS, seed=41)
    api = start_flows_api_service(db)
    figures = source_figures(db)
    spans = split(figures.min_time, figures.max_time + 1, 2)
    with BigQueryProxy(bigquery_emulator.url) as proxy:
        aborted = proxy.add(
            Rule("POST", r"/jobs", body=r"MERGE", action="fail", message=CONCURRENT_UPDATE, times=2)
        )
        for name, value in {
            "TAP_FLOWS_API_URL": api.url,
            "TAP_FLOWS_PAGE_SIZE": "2000",
            "TARGET_BIGQUERY_LITE_API_ENDPOINT": proxy.url,
            "TARGET_BIGQUERY_LITE_PROJECT": bq_client.project,
            "TARGET_BIGQUERY_LITE_DATASET": bq_dataset,
            "TARGET_BIGQUERY_LITE_BATCH_MAX_ROWS": "4000",
            "TARGET_BIGQUERY_LITE_STAGING_DIR": str(tmp_path / "staging"),
            "FLOWS_BACKFILL_STATE_DIR": str(tmp_path / "backfill"),
        }.items():
            monkeypatch.setenv(name, value)
        job = build_definitions(load_project()).resolve_job_def("flows_to_bigquery_backfill")
        instance = dg.DagsterInstance.get()
        instance.add_dynamic_partitions(job.name, [span.key for span in spans])

        results = [
            job.execute_in_process(instance=instance, partition_key=span.key) for span in spans
        ]

    assert all(result.success for result in results)
    assert aborted.hits == 2  # each abort was retried by the target, not by Dagster
    assert table_figures(bq_client, f"{bq_dataset}.flows") == figures
    for span, result in zip(spans, results, strict=True):
        (output,) = (event for event in result.all_events if event.is_successful_output)
        values = {key: value.value for key, value in output.step_output_data.metadata.items()}
        rows = source_figures(db, until=span.end).rows - source_figures(db, until=span.start).rows
        assert values["rows committed"] == rows
        saved = PartitionPipe(tmp_path / "backfill" / job.name, span).saved_state()
        assert saved["bookmarks"]["flows"]["replication_key_value"] == int(values["bookmark"])
        assert span.start <= int(values["bookmark"]) < span.end
