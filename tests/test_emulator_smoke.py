"""The BigQuery emulator answers the real google-cloud-bigquery client: load job, MERGE, query."""

from __future__ import annotations

import io

from google.cloud import bigquery, storage

SCHEMA = [
    bigquery.SchemaField("id", "INT64", mode="REQUIRED"),
    bigquery.SchemaField("time", "INT64"),
    bigquery.SchemaField("src_comp", "STRING"),
]


def _load(
    client: bigquery.Client, table: str, rows: list[tuple[int, int, str]]
) -> bigquery.LoadJob:
    body = "".join(f'{{"id": {i}, "time": {t}, "src_comp": "{c}"}}\n' for i, t, c in rows).encode()
    config = bigquery.LoadJobConfig(
        schema=SCHEMA, source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON
    )
    job = client.load_table_from_file(io.BytesIO(body), table, job_config=config)
    job.result()
    return job


def test_load_then_merge_on_id_through_the_real_client(
    bq_client: bigquery.Client, bq_dataset: str
) -> None:
    project = bq_client.project
    staging, final = f"{project}.{bq_dataset}.staging", f"{project}.{bq_dataset}.final"
    bq_client.create_table(bigquery.Table(final, schema=SCHEMA))
    _load(bq_client, final, [(1, 1, "C1"), (2, 1, "C2")])

    job = _load(bq_client, staging, [(2, 5, "C2-new"), (3, 6, "C3"), (3, 7, "C3-latest")])
    assert job.output_rows == 3

    merge = bq_client.query(f"""
        MERGE `{final}` T
        USING (
            SELECT * FROM `{staging}`
            QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY time DESC) = 1
        ) S
        ON T.id = S.id
        WHEN MATCHED THEN UPDATE SET time = S.time, src_comp = S.src_comp
        WHEN NOT MATCHED THEN INSERT (id, time, src_comp) VALUES (S.id, S.time, S.src_comp)
    """)
    merge.result()
    assert merge.num_dml_affected_rows == 2

    rows = bq_client.query(f"SELECT id, time, src_comp FROM `{final}` ORDER BY id").result()
    assert [tuple(r.values()) for r in rows] == [
        (1, 1, "C1"),
        (2, 5, "C2-new"),
        (3, 7, "C3-latest"),
    ]
    count = next(
        iter(
            bq_client.query(
                f"SELECT count(*) AS n, count(DISTINCT id) AS d FROM `{final}`"
            ).result()
        )
    )
    assert (count.n, count.d) == (3, 3)
    bq_client.delete_table(staging)
    assert [t.table_id for t in bq_client.list_tables(bq_dataset)] == ["final"]


def test_load_jobs_read_gs_uris_from_the_local_cloud_storage(
    bq_client: bigquery.Client, bq_dataset: str, gcs_client: storage.Client, gcs_bucket: str
) -> None:
    bucket = gcs_client.bucket(gcs_bucket)
    for day, ids in (("2024-01-01", (1, 2)), ("2024-01-02", (3, 4, 5))):
        body = "".join(f'{{"id": {i}, "time": {i * 10}, "src_comp": "C{i}"}}\n' for i in ids)
        bucket.blob(f"archive/flows/dt={day}/run-000001-1.jsonl").upload_from_string(body)
    table = f"{bq_client.project}.{bq_dataset}.from_gcs"
    bq_client.create_table(bigquery.Table(table, schema=SCHEMA))
    config = bigquery.LoadJobConfig(
        schema=SCHEMA, source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON
    )
    uris = [
        f"gs://{gcs_bucket}/archive/flows/dt=2024-01-01/run-000001-1.jsonl",
        f"gs://{gcs_bucket}/archive/flows/dt=2024-01-02/*.jsonl",
    ]

    job = bq_client.load_table_from_uri(uris, table, job_config=config)
    job.result()

    assert job.output_rows == 5
    rows = bq_client.query(f"SELECT id, src_comp FROM `{table}` ORDER BY id").result()
    assert [(row.id, row.src_comp) for row in rows] == [(i, f"C{i}") for i in range(1, 6)]
