"""The strict BigQuery refuses what BigQuery refuses, and accepts what it accepts.

Every request goes through the real google-cloud-bigquery client to the strict front the
session hands out. `admin` is the harness's client; `anonymous` is a client like the
target's (anonymous credentials: least privilege). Each rule has a refused and an accepted
case; refused ones are claimed from the violation log (and so prove they were recorded).
"""

from __future__ import annotations

import io
import uuid

import pytest
from dev_services.bigquery_emulator import emulator_client
from dev_services.strict_bigquery import create_dataset
from dev_services.strict_state import Principal
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

PROJECT = "flows-local"
SCHEMA = [
    bigquery.SchemaField("id", "INT64", mode="REQUIRED"),
    bigquery.SchemaField("ts", "TIMESTAMP"),
    bigquery.SchemaField("name", "STRING"),
]


@pytest.fixture
def anonymous(bigquery_emulator) -> bigquery.Client:
    return bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=bigquery_emulator.url),
    )


@pytest.fixture
def table(bq_client: bigquery.Client, bq_dataset: str) -> str:
    table_id = f"{PROJECT}.{bq_dataset}.events"
    bq_client.create_table(bigquery.Table(table_id, schema=SCHEMA))
    return table_id


# --- ZetaSQL ----------------------------------------------------------------------------------
def test_a_statement_zetasql_rejects_fails_with_its_message(bq_client, table, strict_bigquery):
    with pytest.raises(exceptions.BadRequest, match=r"Unrecognized name: nope.*ZetaSQL"):
        bq_client.query(f"SELECT nope FROM `{table}`").result()
    (violation,) = strict_bigquery.claim("sql")
    assert "nope" in violation.request


def test_a_statement_zetasql_accepts_runs(bq_client, table, strict_bigquery):
    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("low", "INT64", 0)]
    )
    rows = bq_client.query(f"SELECT id FROM `{table}` WHERE id > @low", job_config=config)
    assert list(rows.result()) == []
    assert strict_bigquery.violations() == []


def test_an_undeclared_parameter_is_rejected(bq_client, table, strict_bigquery):
    with pytest.raises(exceptions.BadRequest, match="Query parameter 'low' not found"):
        bq_client.query(f"SELECT id FROM `{table}` WHERE id > @low").result()
    assert len(strict_bigquery.claim("sql")) == 1


def test_a_script_is_analyzed_statement_by_statement(bq_client, table, strict_bigquery):
    good = (
        f"BEGIN TRANSACTION;\nDELETE FROM `{table}` WHERE TRUE;\n"
        f"INSERT INTO `{table}` (id, name) SELECT 1, 'a';\nCOMMIT TRANSACTION;"
    )
    bq_client.query(good).result()
    assert strict_bigquery.violations() == []
    bad = good.replace("SELECT 1, 'a'", "SELECT 1, missing_column")
    with pytest.raises(exceptions.BadRequest, match="Unrecognized name: missing_column"):
        bq_client.query(bad).result()
    assert len(strict_bigquery.claim("sql")) == 1


def test_table_names_are_case_sensitive_and_columns_are_not(bq_client, table, strict_bigquery):
    assert list(bq_client.query(f"SELECT ID, Name FROM `{table}`").result()) == []
    with pytest.raises(exceptions.BadRequest, match="Table not found"):
        bq_client.query(f"SELECT id FROM `{table.upper()}`").result()
    assert len(strict_bigquery.claim("sql")) == 1


# --- least privilege --------------------------------------------------------------------------
def test_data_editor_cannot_insert_a_dataset_even_one_that_exists(
    anonymous, bq_dataset, strict_bigquery
):
    with pytest.raises(exceptions.Forbidden, match=r"bigquery\.datasets\.create"):
        anonymous.create_dataset(bq_dataset, exists_ok=True)
    with pytest.raises(exceptions.Forbidden):
        anonymous.create_dataset(f"new_{uuid.uuid4().hex[:8]}")
    assert len(strict_bigquery.claim("permission")) == 2
    assert anonymous.get_dataset(bq_dataset).dataset_id == bq_dataset


def test_the_harness_admin_creates_datasets(bigquery_emulator, bq_client, strict_bigquery):
    name = f"admin_{uuid.uuid4().hex[:8]}"
    create_dataset(bigquery_emulator.url, name)
    assert bq_client.get_dataset(name).location == "europe-west2"
    bq_client.delete_dataset(name)
    assert strict_bigquery.violations() == []


def test_a_test_can_give_the_target_more_rights(anonymous, strict_bigquery, bq_client):
    name = f"owner_{uuid.uuid4().hex[:8]}"
    with strict_bigquery.principal(Principal("dataset owner", frozenset({"*"}))):
        anonymous.create_dataset(name)
    bq_client.delete_dataset(name)
    assert strict_bigquery.violations() == []


# --- etags ------------------------------------------------------------------------------------
def test_a_patch_with_a_stale_etag_fails_with_412(anonymous, table):
    first, second = anonymous.get_table(table), anonymous.get_table(table)
    assert first.etag == second.etag
    first.description = "first writer"
    updated = anonymous.update_table(first, ["description"])
    assert updated.etag != second.etag
    second.description = "second writer, from the old etag"
    with pytest.raises(exceptions.PreconditionFailed, match="Precondition check failed"):
        anonymous.update_table(second, ["description"])
    fresh = anonymous.get_table(table)
    fresh.description = "second writer, after reading again"
    assert anonymous.update_table(fresh, ["description"]).description.startswith("second")


# --- locations ----------------------------------------------------------------------------------
def test_a_job_in_a_single_region_is_not_found_without_its_location(anonymous, table):
    job = anonymous.query(f"SELECT id FROM `{table}`")
    job.result()
    assert job.location == "europe-west2"
    with pytest.raises(exceptions.NotFound, match=f"Job {PROJECT}:{job.job_id}"):
        anonymous.get_job(job.job_id)
    assert anonymous.get_job(job.job_id, location="europe-west2").state == "DONE"
    with pytest.raises(exceptions.NotFound):
        anonymous.get_job(job.job_id, location="US")


def test_a_job_in_the_us_multi_region_is_found_without_location(bigquery_emulator, bq_client):
    name = f"us_{uuid.uuid4().hex[:8]}"
    create_dataset(bigquery_emulator.url, name, location="US")
    try:
        bq_client.create_table(bigquery.Table(f"{PROJECT}.{name}.t", schema=SCHEMA))
        job = bq_client.query(f"SELECT id FROM `{PROJECT}.{name}.t`")
        job.result()
        assert job.location == "US"
        assert bq_client.get_job(job.job_id).state == "DONE"
    finally:
        bq_client.delete_dataset(name, delete_contents=True)


def test_a_lookup_right_after_a_409_is_404_once(anonymous, table):
    job_id = f"conflict_{uuid.uuid4().hex}"
    anonymous.query(f"SELECT id FROM `{table}`", job_id=job_id, job_retry=None).result()
    with pytest.raises(exceptions.Conflict):
        anonymous.query(f"SELECT id FROM `{table}`", job_id=job_id, job_retry=None)
    with pytest.raises(exceptions.NotFound):
        anonymous.get_job(job_id, location="europe-west2")
    assert anonymous.get_job(job_id, location="europe-west2").state == "DONE"


def test_a_job_asking_for_another_location_than_its_dataset_is_not_found(anonymous, table):
    with pytest.raises(exceptions.NotFound, match="was not found in location US"):
        anonymous.query(f"SELECT id FROM `{table}`", location="US").result()


# --- partition filters ------------------------------------------------------------------------
@pytest.fixture
def partitioned(bq_client, bq_dataset) -> str:
    table = bigquery.Table(f"{PROJECT}.{bq_dataset}.parted", schema=SCHEMA)
    table.time_partitioning = bigquery.TimePartitioning(field="ts")
    table.require_partition_filter = True
    return bq_client.create_table(table).full_table_id.replace(":", ".")


def test_a_query_without_a_partition_filter_is_refused(bq_client, partitioned, strict_bigquery):
    with pytest.raises(exceptions.BadRequest, match=r"without a filter over column.*'ts'"):
        bq_client.query(f"SELECT id FROM `{partitioned}` WHERE id = 1").result()
    with pytest.raises(exceptions.BadRequest, match="partition elimination"):
        bq_client.query(f"SELECT id FROM `{partitioned}` WHERE ts = ts").result()
    assert len(strict_bigquery.claim("partition-filter")) == 2


def test_a_query_with_a_pruning_filter_runs(bq_client, partitioned, strict_bigquery):
    bq_client.query(
        f"SELECT id FROM `{partitioned}` WHERE ts >= TIMESTAMP '2024-01-01' AND id = 1"
    ).result()
    delete = f"DELETE FROM `{partitioned}` WHERE ts BETWEEN @low AND @high AND id = 1"
    parameters = [
        bigquery.ScalarQueryParameter("low", "TIMESTAMP", "2024-01-01T00:00:00Z"),
        bigquery.ScalarQueryParameter("high", "TIMESTAMP", "2024-01-02T00:00:00Z"),
    ]
    config = bigquery.QueryJobConfig(query_parameters=parameters)
    bq_client.query(delete, job_config=config).result()
    assert strict_bigquery.violations() == []


# --- table operations per day -----------------------------------------------------------------
def test_table_operations_are_counted_and_limited(
    bigquery_emulator, anonymous, table, strict_bigquery
):
    config = bigquery.LoadJobConfig(source_format="NEWLINE_DELIMITED_JSON", schema=SCHEMA)
    for row in range(2):
        data = f'{{"id": {row}}}\n'.encode()
        anonymous.load_table_from_file(io.BytesIO(data), table, job_config=config).result()
    anonymous.query(f"DELETE FROM `{table}` WHERE id = 0").result()
    assert strict_bigquery.operations(table) == 3
    state = bigquery_emulator.state
    state.daily_table_operations, before = 3, state.daily_table_operations
    try:
        with pytest.raises(exceptions.Forbidden, match="exceeded quota"):
            anonymous.query(f"DELETE FROM `{table}` WHERE id = 1").result()
    finally:
        state.daily_table_operations = before
    assert len(strict_bigquery.claim("quota")) == 1
    assert [row["id"] for row in emulator_client(bigquery_emulator.url).list_rows(table)] == [1]
