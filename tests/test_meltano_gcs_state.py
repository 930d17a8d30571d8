"""Meltano's state in a Cloud Storage bucket (its GCS state backend) instead of `.state/`.

`meltano run` twice against fake-gcs-server: the second run resumes from the state the first
saved in the bucket, and nothing is written to the project's `.state/` folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from dev_services.fault_proxy import FaultProxy
from dev_services.flows_check import source_figures, table_figures
from dev_services.process import Service
from google.cloud import bigquery, storage

from tests.conftest import ROOT, append_rows, bookmark, generate_db, meltano

STATE_PREFIX = "tenants/acme/meltano-state"


def state_folder() -> set[str]:
    """What the project's file state backend holds."""
    return {str(path.relative_to(ROOT)) for path in (ROOT / ".state").rglob("*")}


def test_meltano_keeps_its_state_in_a_bucket_and_resumes_from_it(
    tmp_path: Path,
    start_flows_api_service,
    bigquery_emulator: Service,
    bq_client: bigquery.Client,
    bq_dataset: str,
    gcs_server: Service,
    gcs_client: storage.Client,
    gcs_bucket: str,
    state_suffix: str,
) -> None:
    db = generate_db(tmp_path / "flows.db", 20_000, seed=17)
    api = start_flows_api_service(db)
    env = {
        "TAP_FLOWS_PAGE_SIZE": "6000",
        "TARGET_BIGQUERY_LITE_API_ENDPOINT": bigquery_emulator.url,
        "TARGET_BIGQUERY_LITE_DATASET": bq_dataset,
        "TARGET_BIGQUERY_LITE_BATCH_MAX_ROWS": "8000",
        "TARGET_BIGQUERY_LITE_STAGING_DIR": str(tmp_path / "staging"),
        "MELTANO_STATE_BACKEND_URI": f"gs://{gcs_bucket}/{STATE_PREFIX}",
        "STORAGE_EMULATOR_HOST": gcs_server.url,
        "GOOGLE_CLOUD_PROJECT": "flows-local",
    }
    state_id = f"dev:tap-flows-to-target-bigquery-lite:{state_suffix}"
    state_object = f"{STATE_PREFIX}/{state_id}/state.json"

    def saved_in_bucket() -> dict:
        stored = gcs_client.bucket(gcs_bucket).blob(state_object).download_as_bytes()
        return json.loads(stored)["completed"]["singer_state"]

    table = f"{bq_dataset}.flows"
    local_before = state_folder()

    def run(api_url: str) -> str:
        result = meltano(
            "run", "--state-id-suffix", state_suffix, "tap-flows", "target-bigquery-lite",
            env={**env, "TAP_FLOWS_API_URL": api_url},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Using GCSStateStoreManager add-on state backend" in result.stderr
        return result.stderr

    run(api.url)
    first = saved_in_bucket()
    assert bookmark(first) == source_figures(db).max_time
    assert table_figures(bq_client, table) == source_figures(db)

    append_rows(db, 3_000)
    with FaultProxy(api.url) as proxy:
        run(proxy.url)
    # resumed from the bucket's bookmark (inclusive), not from the beginning
    assert proxy.requests[0].query["since"] == str(bookmark(first))
    assert "after_id" not in proxy.requests[0].query
    second = saved_in_bucket()
    after = source_figures(db)
    assert after.rows == 23_000
    assert bookmark(second) == after.max_time > bookmark(first)
    assert table_figures(bq_client, table) == after
    got = meltano("state", "get", state_id, env=env)
    assert got.returncode == 0, got.stderr[-2000:]
    assert json.loads(got.stdout)["singer_state"] == second
    assert state_folder() == local_before
    assert not (ROOT / ".state" / state_id).exists()
