"""target-bigquery-lite: a minimal exactly-once Singer target for BigQuery."""
