"""`meltano run` end to end against real local services: backfill, incremental, reuse."""

from __future__ import annotations

from pathlib import Path

import orjson
from dev_services.flows_check import source_figures, table_figures

from tests.conftest import append_rows, bookmark, generate_db, meltano, saved_state


def test_backfill_then_incremental_lands_exactly_the_source(
    tmp_path: Path, start_flows_api_service, bigquery_emulator, bq_client, bq_dataset, state_suffix
) -> None:
    db = generate_db(tmp_path / "flows.db", 30_000, seed=5)
    api = start_flows_api_service(db)
    env = {
        "TAP_FLOWS_API_URL": api.url,
        "TAP_FLOWS_PAGE_SIZE": "7000",
        "TARGET_BIGQUERY_LITE_API_ENDPOINT": bigquery_emulator.url,
        "TARGET_BIGQUERY_LITE_DATASET": bq_dataset,
        "TARGET_BIGQUERY_LITE_BATCH_MAX_ROWS": "12000",
        "TARGET_BIGQUERY_LITE_STAGING_DIR": str(tmp_path / "staging"),
    }
    state_id = f"dev:tap-flows-to-target-bigquery-lite:{state_suffix}"
    table = f"{bq_dataset}.flows"

    first = meltano(
        "run", "--state-id-suffix", state_suffix, "tap-flows", "target-bigquery-lite", env=env
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert table_figures(bq_client, table) == source_figures(db)
    assert bookmark(saved_state(state_id)) == source_figures(db).max_time

    append_rows(db, 4_000)
    second = meltano("run", "--state-id-suffix", state_suffix, "flows-to-bigquery", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    after = source_figures(db)
    assert after.rows == 34_000
    assert table_figures(bq_client, table) == after
    assert bookmark(saved_state(state_id)) == after.max_time
    assert "Incremental state has been updated" in second.stderr


def test_meltano_run_with_target_jsonl_writes_exactly_the_source_rows(
    tmp_path: Path, start_flows_api_service, state_suffix
) -> None:
    db = generate_db(tmp_path / "flows.db", 8_000, seed=9)
    api = start_flows_api_service(db)
    out = tmp_path / "jsonl"
    out.mkdir()
    env = {"TAP_FLOWS_API_URL": api.url, "TARGET_JSONL_DESTINATION_PATH": str(out)}

    result = meltano("run", "--state-id-suffix", state_suffix, "tap-flows", "target-jsonl", env=env)

    assert result.returncode == 0, result.stderr[-3000:]
    files = list(out.glob("flows*.jsonl"))
    assert len(files) == 1
    rows = [orjson.loads(line) for line in files[0].read_bytes().splitlines()]
    ids = [r["id"] for r in rows]
    assert sorted(ids) == list(range(1, 8_001))
    assert sum(r["byte_count"] for r in rows) == source_figures(db).sum_byte_count
    state_id = f"dev:tap-flows-to-target-jsonl:{state_suffix}"
    assert bookmark(saved_state(state_id)) == source_figures(db).max_time
