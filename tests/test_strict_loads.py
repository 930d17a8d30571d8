"""The strict BigQuery fails load jobs whose rows BigQuery would refuse, and loads the rest.

Each value goes through the real client's load job (multipart and resumable uploads, and
a resumable upload in many small chunks) to the strict front. A refused load fails like
BigQuery's (DONE, `errorResult` with the summary, the strict reason in `errors[]`), is
recorded, and loads nothing.
"""

from __future__ import annotations

import io
import json

import google.cloud.bigquery.client as bigquery_client_module
import pytest
from google.api_core import exceptions
from google.cloud import bigquery

PROJECT = "flows-local"
SCHEMA = [
    bigquery.SchemaField("id", "INT64", mode="REQUIRED"),
    bigquery.SchemaField("n", "INT64"),
    bigquery.SchemaField("x", "FLOAT64"),
    bigquery.SchemaField("dec", "NUMERIC"),
    bigquery.SchemaField("big", "BIGNUMERIC"),
    bigquery.SchemaField("ts", "TIMESTAMP"),
    bigquery.SchemaField("dt", "DATETIME"),
    bigquery.SchemaField("day", "DATE"),
    bigquery.SchemaField("clock", "TIME"),
    bigquery.SchemaField("doc", "JSON"),
    bigquery.SchemaField("tags", "STRING", mode="REPEATED"),
    bigquery.SchemaField(
        "host", "RECORD", fields=[bigquery.SchemaField("name", "STRING", mode="REQUIRED")]
    ),
]
REFUSED = {
    "null element in a REPEATED field": '{"id": 1, "tags": ["a", null]}',
    "REQUIRED field missing": '{"n": 1}',
    "REQUIRED field null": '{"id": null}',
    "REQUIRED sub-field missing": '{"id": 1, "host": {}}',
    "INT64 out of range": '{"id": 1, "n": "9223372036854775808"}',
    "INT64 fractional": '{"id": 1, "n": 1.5}',
    "unquoted integer beyond 2^53": '{"id": 9007199254740993}',
    "NUMERIC with 30 integer digits": '{"id": 1, "dec": "123456789012345678901234567890"}',
    "NUMERIC with 10 fractional digits": '{"id": 1, "dec": "0.1234567891"}',
    "BIGNUMERIC with 39 fractional digits": '{"id": 1, "big": "0.' + "1" * 39 + '"}',
    "TIMESTAMP with 7 fractional digits": '{"id": 1, "ts": "2024-01-01T00:00:00.1234567Z"}',
    "TIMESTAMP with a zone abbreviation": '{"id": 1, "ts": "2024-01-01 10:00:00 EST"}',
    "TIMESTAMP leap second": '{"id": 1, "ts": "2016-12-31T23:59:60Z"}',
    "TIMESTAMP with garbage": '{"id": 1, "ts": "2024-01-01garbage"}',
    "DATETIME with 7 fractional digits": '{"id": 1, "dt": "2024-01-01T00:00:00.1234567"}',
    "DATETIME with a zone": '{"id": 1, "dt": "2024-01-01T00:00:00+01:00"}',
    "impossible DATE": '{"id": 1, "day": "2024-02-30"}',
    "TIME with a zone offset": '{"id": 1, "clock": "10:00:00+02:00"}',
    "FLOAT64 beyond its range": '{"id": 1, "x": 1e400}',
    "NaN token": '{"id": 1, "x": NaN}',
    "unknown field": '{"id": 1, "surprise": 1}',
    "a string for a RECORD": '{"id": 1, "host": "h"}',
}
# BigQuery also loads epoch seconds as a TIMESTAMP, `YYYY/MM/DD` dates with zone names and a
# bare string into a JSON column; the emulator refuses those, so they are not listed here.
ACCEPTED = [
    '{"id": 9007199254740991, "n": "-9223372036854775808", "x": "NaN"}',
    '{"id": 2, "dec": "12345678901234567890123456789.123456789", "x": 1.5e300}',
    '{"id": 3, "big": "0.' + "1" * 38 + '", "n": 1.0}',
    '{"id": 4, "ts": "2024-01-01 10:00:00.123456+05:30", "dt": "2024-01-01T23:59:59.999999"}',
    '{"id": 5, "ts": "2024-01-01T10:00:00-08:00", "day": "2024-02-29"}',
    '{"id": 6, "clock": "23:59:59.999999", "tags": null}',
    '{"id": 7, "doc": [1, "two"], "host": {"name": "h"}, "tags": ["a", "b"]}',
    '{"id": 8, "doc": {"nested": [1, {"deep": null}]}, "ts": "2024-01-01T00:00:00 UTC"}',
]


@pytest.fixture
def table(bq_client: bigquery.Client, bq_dataset: str) -> str:
    table_id = f"{PROJECT}.{bq_dataset}.loads"
    bq_client.create_table(bigquery.Table(table_id, schema=SCHEMA))
    return table_id


def load(client: bigquery.Client, table: str, lines: list[str], *, multipart: bool = False):
    data = ("\n".join(lines) + "\n").encode()
    config = bigquery.LoadJobConfig(source_format="NEWLINE_DELIMITED_JSON", schema=SCHEMA)
    job = client.load_table_from_file(
        io.BytesIO(data), table, job_config=config, size=len(data) if multipart else None
    )
    return job, job.result


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_value_bigquery_refuses_fails_the_load(bq_client, table, strict_bigquery, case):
    job, wait = load(bq_client, table, ['{"id": 100}', REFUSED[case]])
    with pytest.raises(exceptions.BadRequest, match="JSON table encountered too many errors"):
        wait()
    assert job.error_result["message"].endswith("errors[] collection for more details.")
    assert "Rows: 2; errors: 1" in job.error_result["message"]
    assert "row starting at position 12" in job.errors[1]["message"]
    (violation,) = strict_bigquery.claim("load")
    assert table in violation.message
    assert bq_client.get_table(table).num_rows == 0


def test_values_bigquery_accepts_load(bq_client, table, strict_bigquery):
    job, wait = load(bq_client, table, ACCEPTED)
    wait()
    assert job.output_rows == len(ACCEPTED)
    assert strict_bigquery.violations() == []


def test_a_multipart_upload_is_checked(bq_client, table, strict_bigquery):
    refused = REFUSED["null element in a REPEATED field"]
    job, wait = load(bq_client, table, [refused], multipart=True)
    with pytest.raises(exceptions.BadRequest, match="too many errors"):
        wait()
    assert "NULL element in REPEATED field tags" in job.errors[1]["message"]
    assert len(strict_bigquery.claim("load")) == 1
    job, wait = load(bq_client, table, ACCEPTED[:2], multipart=True)
    wait()
    assert job.output_rows == 2


def test_a_resumable_upload_is_checked_across_its_chunks(
    bq_client, table, strict_bigquery, monkeypatch
):
    monkeypatch.setattr(bigquery_client_module, "_DEFAULT_CHUNKSIZE", 256 * 1024)
    padding = "x" * 1000
    rows = [json.dumps({"id": i, "tags": [padding]}) for i in range(1, 800)]
    bad = '{"id": 800, "ts": "2024-01-01T00:00:00.1234567Z"}'
    job, wait = load(bq_client, table, [*rows, bad])
    with pytest.raises(exceptions.BadRequest, match="Rows: 800; errors: 1"):
        wait()
    assert "more than 6 fractional digits" in job.errors[1]["message"]
    assert len(strict_bigquery.claim("load")) == 1
    job, wait = load(bq_client, table, rows)
    wait()
    assert job.output_rows == len(rows)


def test_ignore_unknown_values_lets_unknown_fields_pass(bq_client, table, strict_bigquery):
    data = b'{"id": 1, "surprise": {"a": 1}}\n'
    config = bigquery.LoadJobConfig(
        source_format="NEWLINE_DELIMITED_JSON", schema=SCHEMA, ignore_unknown_values=True
    )
    bq_client.load_table_from_file(io.BytesIO(data), table, job_config=config).result()
    assert bq_client.get_table(table).num_rows == 1
    assert strict_bigquery.violations() == []
