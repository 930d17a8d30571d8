"""The columns the target adds to what a stream's records carry, and their BigQuery fields.

One home for their names, so staging (which fills them), the load methods (which order by
or drop them) and the version clean-up (which filters on one) agree.
"""

from __future__ import annotations

from google.cloud.bigquery import SchemaField

SEQUENCE_COLUMN = "_bqlite_seq"
"""The arrival order of a record within its batch (sequenced methods' staging only)."""
SEQUENCE_FIELD = SchemaField(SEQUENCE_COLUMN, "INT64")

VERSION_COLUMN = "_sdc_table_version"
"""The full-table sync a record belongs to (streams that see ACTIVATE_VERSION or versions)."""
VERSION_FIELD = SchemaField(VERSION_COLUMN, "INT64")

RUN_COLUMN = "_bqlite_run"
"""The run that loaded a versioned stream's row without any version (else NULL): the end-of-run
clean-up of that run keeps such rows, where it deletes older runs' unversioned rows."""
RUN_FIELD = SchemaField(RUN_COLUMN, "STRING")

METADATA_FIELDS = (
    SchemaField("_sdc_extracted_at", "TIMESTAMP"),
    SchemaField("_sdc_received_at", "TIMESTAMP"),
)
"""`add_metadata_columns`: when the tap extracted a record, when the target received it."""
