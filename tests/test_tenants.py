"""Per-tenant runs: two inherited plugin pairs, two APIs with their own keys and data."""

from __future__ import annotations

from pathlib import Path

from dev_services.flows_check import source_figures, table_figures
from dev_services.strict_bigquery import create_dataset

from tests.conftest import bookmark, generate_db, meltano, saved_state


def test_two_tenants_land_in_their_own_datasets_with_their_own_state(
    tmp_path: Path, start_flows_api_service, bigquery_emulator, bq_client, state_suffix
) -> None:
    dbs = {
        "acme": generate_db(tmp_path / "acme.db", 6_000, seed=21),
        "globex": generate_db(tmp_path / "globex.db", 9_000, seed=22),
    }
    env: dict[str, str] = {"TARGET_BIGQUERY_LITE_API_ENDPOINT": bigquery_emulator.url}
    datasets = {}
    for tenant, db in dbs.items():
        api = start_flows_api_service(db, api_key=f"key-of-{tenant}")
        prefix = tenant.upper()
        datasets[tenant] = f"{tenant}_{state_suffix.replace('-', '_')}"
        create_dataset(bigquery_emulator.url, datasets[tenant])
        env[f"TAP_FLOWS__{prefix}_API_URL"] = api.url
        env[f"TAP_FLOWS__{prefix}_API_KEY"] = f"key-of-{tenant}"
        env[f"TARGET_BIGQUERY_LITE__{prefix}_DATASET"] = datasets[tenant]
        env[f"TARGET_BIGQUERY_LITE__{prefix}_STAGING_DIR"] = str(tmp_path / f"staging-{tenant}")
    try:
        for tenant in dbs:
            result = meltano(
                "run", "--state-id-suffix", state_suffix, f"{tenant}-to-bigquery", env=env
            )
            assert result.returncode == 0, result.stderr[-3000:]
            assert f"key-of-{tenant}" not in result.stderr

        for tenant, db in dbs.items():
            expected = source_figures(db)
            assert table_figures(bq_client, f"{datasets[tenant]}.flows") == expected
            state_id = f"dev:tap-flows--{tenant}-to-target-bigquery-lite--{tenant}:{state_suffix}"
            assert bookmark(saved_state(state_id)) == expected.max_time
        assert source_figures(dbs["acme"]) != source_figures(dbs["globex"])
    finally:
        for dataset in datasets.values():
            bq_client.delete_dataset(dataset, delete_contents=True, not_found_ok=True)


def test_a_tenant_with_the_wrong_key_fails_clearly_and_saves_no_state(
    tmp_path: Path, start_flows_api_service, bigquery_emulator, state_suffix
) -> None:
    db = generate_db(tmp_path / "acme.db", 1_000, seed=23)
    api = start_flows_api_service(db, api_key="right-key")
    env = {
        "TAP_FLOWS__ACME_API_URL": api.url,
        "TAP_FLOWS__ACME_API_KEY": "wrong-key",
        "TARGET_BIGQUERY_LITE_API_ENDPOINT": bigquery_emulator.url,
        "TARGET_BIGQUERY_LITE__ACME_DATASET": f"acme_{state_suffix.replace('-', '_')}",
    }
    create_dataset(bigquery_emulator.url, env["TARGET_BIGQUERY_LITE__ACME_DATASET"])
    result = meltano("run", "--state-id-suffix", state_suffix, "acme-to-bigquery", env=env)
    assert result.returncode != 0
    assert "api_key" in result.stderr
    assert "wrong-key" not in result.stderr
    state_dir = Path(__file__).resolve().parents[1] / ".state"
    assert not list(state_dir.glob(f"*:{state_suffix}"))
